//! Headers exchanges: bindings match on message headers, with `x-match` set
//! to `all` (the default), `any`, `all-with-x` or `any-with-x`.

use warren_protocol::{FieldTable, FieldValue};

use super::Destination;

#[derive(Debug, Default)]
pub struct HeadersRouter {
    bindings: Vec<(FieldTable, Destination)>,
}

impl HeadersRouter {
    pub fn bind(&mut self, dest: &Destination, args: &FieldTable) {
        self.bindings.push((args.clone(), dest.clone()));
    }

    pub fn unbind(&mut self, dest: &Destination, args: &FieldTable) {
        if let Some(i) = self
            .bindings
            .iter()
            .position(|(a, d)| d == dest && a == args)
        {
            self.bindings.swap_remove(i);
        }
    }

    pub fn route(&self, headers: Option<&FieldTable>, out: &mut dyn FnMut(&Destination)) {
        for (args, dest) in &self.bindings {
            if headers_match(args, headers) {
                out(dest);
            }
        }
    }
}

/// Whether a message with `headers` matches a binding with `args`, following
/// RabbitMQ: a void binding value only asks for the header to be present;
/// keys starting with `x-` take part only in the `-with-x` modes; `all` with
/// nothing to compare matches, `any` with nothing to compare does not.
pub fn headers_match(args: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let mode = match args.get("x-match") {
        Some(FieldValue::LongString(b)) | Some(FieldValue::ByteArray(b)) => b.as_ref(),
        _ => b"all".as_slice(),
    };
    let (any, with_x) = match mode {
        b"any" => (true, false),
        b"any-with-x" => (true, true),
        b"all-with-x" => (false, true),
        _ => (false, false),
    };
    let empty = FieldTable::new();
    let headers = headers.unwrap_or(&empty);
    for (key, expected) in args.iter() {
        if key == "x-match" || (!with_x && key.starts_with("x-")) {
            continue;
        }
        let matched = match headers.get(key) {
            None => false,
            Some(_) if matches!(expected, FieldValue::Void) => true,
            Some(actual) => actual.loosely_equals(expected),
        };
        if any && matched {
            return true;
        }
        if !any && !matched {
            return false;
        }
    }
    !any
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn s(v: &str) -> FieldValue {
        FieldValue::LongString(Bytes::copy_from_slice(v.as_bytes()))
    }

    fn table(entries: &[(&str, FieldValue)]) -> FieldTable {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn match_modes() {
        let h = table(&[
            ("format", s("pdf")),
            ("type", s("report")),
            ("x-tag", s("a")),
        ]);
        let cases = [
            (table(&[("format", s("pdf")), ("type", s("report"))]), true),
            (table(&[("format", s("pdf")), ("type", s("log"))]), false),
            (
                table(&[
                    ("x-match", s("any")),
                    ("format", s("zip")),
                    ("type", s("report")),
                ]),
                true,
            ),
            (table(&[("x-match", s("any")), ("format", s("zip"))]), false),
            (table(&[("format", FieldValue::Void)]), true),
            (table(&[("missing", FieldValue::Void)]), false),
            (table(&[("x-tag", s("b"))]), true),
            (
                table(&[("x-match", s("all-with-x")), ("x-tag", s("b"))]),
                false,
            ),
            (
                table(&[("x-match", s("all-with-x")), ("x-tag", s("a"))]),
                true,
            ),
            (
                table(&[("x-match", s("any-with-x")), ("x-tag", s("a"))]),
                true,
            ),
            (table(&[]), true),
            (table(&[("x-match", s("any"))]), false),
        ];
        for (i, (args, want)) in cases.iter().enumerate() {
            assert_eq!(headers_match(args, Some(&h)), *want, "case {i}: {args:?}");
        }
    }

    #[test]
    fn integers_compare_by_value_across_widths() {
        let h = table(&[("n", FieldValue::I64(7))]);
        assert!(headers_match(
            &table(&[("n", FieldValue::I32(7))]),
            Some(&h)
        ));
        assert!(!headers_match(
            &table(&[("n", FieldValue::I32(8))]),
            Some(&h)
        ));
    }

    #[test]
    fn no_headers_matches_only_empty_all() {
        assert!(headers_match(&table(&[]), None));
        assert!(!headers_match(&table(&[("a", s("b"))]), None));
    }
}
