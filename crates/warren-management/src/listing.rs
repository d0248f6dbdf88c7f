//! The query parameters of RabbitMQ's list endpoints: `name` filters
//! (substring or regex, case-insensitive), `sort` / `sort_reverse`,
//! `columns`, and paging with `page` / `page_size`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};

/// The largest page RabbitMQ serves.
const MAX_PAGE_SIZE: i64 = 500;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub page: Option<String>,
    pub page_size: Option<String>,
    pub name: Option<String>,
    pub use_regex: Option<String>,
    pub sort: Option<String>,
    pub sort_reverse: Option<String>,
    pub columns: Option<String>,
}

fn unparsable() -> ApiError {
    ApiError::bad_request("Pagination parameters are invalid")
}

/// A value at a dotted path (`message_stats.publish`).
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a, b) {
        (Some(Value::String(a)), Some(Value::String(b))) => a.cmp(b),
        (Some(Value::Number(a)), Some(Value::Number(b))) => {
            a.as_f64().partial_cmp(&b.as_f64()).unwrap_or(Equal)
        }
        (Some(Value::Bool(a)), Some(Value::Bool(b))) => a.cmp(b),
        (None, Some(_)) => Less,
        (Some(_), None) => Greater,
        _ => Equal,
    }
}

impl ListQuery {
    /// Keeps only the asked-for columns of one item.
    pub fn columns_of(&self, item: Value) -> Value {
        let Some(columns) = self.columns.as_deref().filter(|c| !c.is_empty()) else {
            return item;
        };
        let mut out = Map::new();
        for column in columns.split(',') {
            let Some(v) = at(&item, column) else { continue };
            // Nested columns keep their nesting.
            let mut parts = column.split('.').collect::<Vec<_>>();
            let last = parts.pop().unwrap_or(column);
            let mut map = &mut out;
            for p in parts {
                map = map
                    .entry(p.to_string())
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
                    .expect("an object we made");
            }
            map.insert(last.to_string(), v.clone());
        }
        Value::Object(out)
    }
}

/// `columns` on the endpoints that do not page: a GET whose answer is a
/// list keeps the asked-for columns of each item (nested ones nested); a
/// single object keeps its asked-for top-level keys (`object_totals.queues`
/// keeps `object_totals`), as RabbitMQ trims them. Lists that went
/// through [`listing`] were trimmed already, which trimming again leaves
/// as they are; a page's envelope is left alone.
pub async fn columns_everywhere(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let columns = (req.method() == axum::http::Method::GET)
        .then(|| {
            req.uri()
                .query()
                .and_then(|query| url_query_value(query, "columns").filter(|c| !c.is_empty()))
        })
        .flatten();
    let res = next.run(req).await;
    let Some(columns) = columns else {
        return res;
    };
    if !res.status().is_success() {
        return res;
    }
    let (parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let q = ListQuery {
        columns: Some(columns.clone()),
        ..Default::default()
    };
    let trimmed = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(items)) => Some(Value::Array(
            items.into_iter().map(|i| q.columns_of(i)).collect(),
        )),
        Ok(Value::Object(o)) if !(o.contains_key("items") && o.contains_key("page")) => {
            let keep: Vec<&str> = columns
                .split(',')
                .map(|c| c.split('.').next().unwrap_or(c))
                .collect();
            Some(Value::Object(
                o.into_iter()
                    .filter(|(k, _)| keep.contains(&k.as_str()))
                    .collect(),
            ))
        }
        _ => None,
    };
    match trimmed {
        Some(v) => {
            let mut res = Json(v).into_response();
            *res.status_mut() = parts.status;
            res
        }
        None => Response::from_parts(parts, axum::body::Body::from(bytes)),
    }
}

/// One parameter of a query string, percent-decoded.
fn url_query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Filters, sorts, pages and trims a list as the query says.
pub fn listing(mut items: Vec<Value>, q: &ListQuery) -> ApiResult<Response> {
    if let Some(key) = q.sort.as_deref().filter(|s| !s.is_empty()) {
        items.sort_by(|a, b| compare(at(a, key), at(b, key)));
    }
    if q.sort_reverse.as_deref() == Some("true") {
        items.reverse();
    }
    paged(items, q, |v| v["name"].as_str(), |v| v)
}

/// [`listing`] for objects whose JSON costs a visit (a queue's lock): when
/// a page is asked for in name order (the default), only the page's items
/// are built; otherwise every item is, and listed as [`listing`] does.
/// `items` come in name order.
pub fn listing_lazy<T>(
    items: Vec<T>,
    q: &ListQuery,
    name: impl Fn(&T) -> &str,
    build: impl FnMut(T) -> Value,
) -> ApiResult<Response> {
    let sort = q.sort.as_deref().filter(|s| !s.is_empty());
    if q.page.is_none() || sort.is_some_and(|s| s != "name") {
        return listing(items.into_iter().map(build).collect(), q);
    }
    let mut items = items;
    if sort.is_some() {
        items.sort_by(|a, b| name(a).cmp(name(b)));
    }
    if q.sort_reverse.as_deref() == Some("true") {
        items.reverse();
    }
    paged(items, q, |i| Some(name(i)), build)
}

/// The name filter and the page, building only the items returned.
fn paged<T>(
    mut items: Vec<T>,
    q: &ListQuery,
    name: impl Fn(&T) -> Option<&str>,
    mut build: impl FnMut(T) -> Value,
) -> ApiResult<Response> {
    let Some(page) = &q.page else {
        let items: Vec<Value> = items.into_iter().map(|i| q.columns_of(build(i))).collect();
        return Ok(Json(Value::Array(items)).into_response());
    };
    let page: i64 = page.parse().map_err(|_| unparsable())?;
    let page_size: i64 = match &q.page_size {
        Some(s) => s.parse().map_err(|_| unparsable())?,
        None => 100,
    };
    if page < 1 || !(1..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_pagination_parameters",
            format!("Invalid pagination parameters: page number {page}, page size {page_size}"),
        ));
    }
    let total = items.len();
    if let Some(wanted) = q.name.as_deref().filter(|n| !n.is_empty()) {
        if q.use_regex.as_deref() == Some("true") {
            let re = regex::RegexBuilder::new(wanted)
                .case_insensitive(true)
                .build()
                .map_err(|_| unparsable())?;
            items.retain(|i| name(i).is_some_and(|n| re.is_match(n)));
        } else {
            let needle = wanted.to_lowercase();
            items.retain(|i| name(i).is_some_and(|n| n.to_lowercase().contains(&needle)));
        }
    }
    let filtered = items.len();
    let page_count = filtered.div_ceil(page_size as usize);
    if page as usize > page_count.max(1) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "page_out_of_range",
            format!("Page out of range, page: {page} page size: {page_size}, len: {filtered}"),
        ));
    }
    let start = (page as usize - 1) * page_size as usize;
    let page_items: Vec<Value> = items
        .into_iter()
        .skip(start)
        .take(page_size as usize)
        .map(|i| q.columns_of(build(i)))
        .collect();
    Ok(Json(json!({
        "filtered_count": filtered,
        "item_count": page_items.len(),
        "items": page_items,
        "page": page,
        "page_count": page_count,
        "page_size": page_size,
        "total_count": total,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> ListQuery {
        let mut q = ListQuery::default();
        for (k, v) in pairs {
            let v = Some(v.to_string());
            match *k {
                "page" => q.page = v,
                "page_size" => q.page_size = v,
                "name" => q.name = v,
                "use_regex" => q.use_regex = v,
                "sort" => q.sort = v,
                "sort_reverse" => q.sort_reverse = v,
                "columns" => q.columns = v,
                _ => unreachable!(),
            }
        }
        q
    }

    fn items() -> Vec<Value> {
        ["b", "a", "c", "ab"]
            .iter()
            .map(|n| json!({"name": n, "n": n.len(), "stats": {"x": 1}}))
            .collect()
    }

    async fn body(r: Response) -> Value {
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn pages_filter_sort_and_trim() {
        let r = listing(
            items(),
            &q(&[
                ("page", "1"),
                ("page_size", "2"),
                ("name", "A"),
                ("sort", "name"),
                ("columns", "name,stats.x"),
            ]),
        )
        .unwrap();
        assert_eq!(
            body(r).await,
            json!({"filtered_count": 2, "item_count": 2, "page": 1, "page_count": 1,
                   "page_size": 2, "total_count": 4,
                   "items": [{"name": "a", "stats": {"x": 1}}, {"name": "ab", "stats": {"x": 1}}]})
        );
        let r = listing(
            items(),
            &q(&[
                ("sort", "name"),
                ("sort_reverse", "true"),
                ("columns", "name"),
            ]),
        )
        .unwrap();
        assert_eq!(
            body(r).await,
            json!([{"name": "c"}, {"name": "b"}, {"name": "ab"}, {"name": "a"}])
        );
        let r = listing(
            items(),
            &q(&[
                ("page", "1"),
                ("name", "^a"),
                ("use_regex", "true"),
                ("columns", "name"),
            ]),
        )
        .unwrap();
        assert_eq!(body(r).await["filtered_count"], 2);
    }

    #[test]
    fn bad_pages_are_refused_as_rabbitmq_words_it() {
        let err = |pairs: &[(&str, &str)]| listing(items(), &q(pairs)).unwrap_err();
        assert_eq!(err(&[("page", "0")]).error, "invalid_pagination_parameters");
        assert_eq!(
            err(&[("page", "1"), ("page_size", "501")]).reason,
            "Invalid pagination parameters: page number 1, page size 501"
        );
        assert_eq!(
            err(&[("page", "3"), ("page_size", "2")]).reason,
            "Page out of range, page: 3 page size: 2, len: 4"
        );
        assert_eq!(
            err(&[("page", "x")]).reason,
            "Pagination parameters are invalid"
        );
        assert_eq!(
            err(&[("page", "1"), ("name", "("), ("use_regex", "true")]).reason,
            "Pagination parameters are invalid"
        );
    }
}
