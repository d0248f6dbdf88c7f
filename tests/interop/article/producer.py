import pika
import json

def send_message(message):
    connection = pika.BlockingConnection(pika.ConnectionParameters('localhost'))
    channel = connection.channel()

    channel.queue_declare(queue='hello')

    channel.basic_publish(exchange='', routing_key='hello', body=json.dumps(message))
    print(" [x] Sent %r" % message)
    connection.close()

message = {
    'name': 'John',
    'message': 'Hello World!'
}

send_message(message)
