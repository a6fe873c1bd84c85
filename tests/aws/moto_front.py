"""The local AWS endpoint of the tests: moto in server mode, plus a front for CloudWatch.

The Rust SDK's CloudWatch client speaks only the Smithy RPC v2 CBOR protocol, which moto
does not serve. The front accepts those requests, re-encodes them in the JSON protocol
that moto's CloudWatch does serve (with botocore's own serializer and parser, driven by
the service model), and answers in CBOR. Everything else goes to moto directly.

Usage: python moto_front.py PORT_FILE
Writes "MOTO_PORT FRONT_PORT" to PORT_FILE once both listen, then serves until killed.
"""

import gzip
import http.client
import inspect
import json
import os
import socket
import sys
import threading
import time
from datetime import timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.session
import cbor2
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
import moto.sqs.models
import moto.stepfunctions.responses
from moto.core import utils as moto_utils
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

PREFIX = "/service/GraniteServiceVersion20100801/operation/"
MODEL = botocore.session.get_session().get_service_model("cloudwatch")
SERIALIZER = create_serializer("json", include_validation=False)
PARSER = create_parser("json")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fast_sqs_clock():
    """moto's SQS asks the clock, through naive-datetime arithmetic, tens of times per
    message in flight on every receive: with 3,000 messages held by a run that deletes
    them only after its commit, one receive takes seconds. The same Unix time from
    time.time() makes it take milliseconds; nothing else about moto changes."""
    original = moto_utils.unix_time

    def unix_time(dt=None):
        return time.time() if dt is None else original(dt)

    moto.sqs.models.unix_time = unix_time
    moto.sqs.models.unix_time_millis = lambda dt=None: unix_time(dt) * 1000.0


def serial_sqs_deletes():
    """moto's SQS deletes a message by rebuilding the queue's message list from a copy,
    without a lock: two DeleteMessageBatch calls served at once (as SQS serves them) each
    write back their own copy, and the deletes of one are lost while both succeed. One
    lock around the delete makes moto do what SQS does."""
    lock = threading.Lock()
    delete = moto.sqs.models.Queue.delete_message

    def serial(queue, receipt_handle):
        with lock:
            return delete(queue, receipt_handle)

    moto.sqs.models.Queue.delete_message = serial


def sfn_task_failure_cause():
    """moto's SendTaskFailure passes the error name on and drops the cause, which Step
    Functions keeps (and a Catch puts in $.failure.Cause). Passing it on is the whole
    change."""

    def send_task_failure(self):
        backend = self.stepfunction_backend
        given = {"error": self._get_param("error"), "cause": self._get_param("cause")}
        # Only the executing engine's backend (execute_state_machine) takes a cause.
        taken = inspect.signature(backend.send_task_failure).parameters
        backend.send_task_failure(self._get_param("taskToken"), **{k: v for k, v in given.items() if k in taken})
        return moto.stepfunctions.responses.EmptyResult()

    moto.stepfunctions.responses.StepFunctionResponse.send_task_failure = send_task_failure


def sfn_token_per_attempt():
    """Step Functions gives each attempt of a `.waitForTaskToken` task (each retry) a new
    task token; moto gives the state one token for all its attempts, so a retry inherits
    the outcome its failed attempt reported and fails at once, while its task runs on. A
    new token per attempt is the whole change."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        resource,
        state_task_service_callback,
    )

    service = state_task_service_callback.StateTaskServiceCallback
    attempt = service._eval_execution

    def per_attempt(self, env):
        if self.resource.condition == resource.ResourceCondition.WaitForTaskToken:
            env.callback_pool_manager.add(env.states.context_object.update_task_token())
        return attempt(self, env)

    service._eval_execution = per_attempt


class CloudWatchFront(BaseHTTPRequestHandler):
    moto_port = 0
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if not self.path.startswith(PREFIX):
            return self.answer(404, {"__type": "UnknownOperationException", "message": self.path})
        operation = MODEL.operation_model(self.path[len(PREFIX):])
        params = cbor2.loads(body) if body else {}
        request = SERIALIZER.serialize_to_request(params, operation)
        headers = dict(request["headers"])
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if self.headers.get(name):
                headers[name] = self.headers[name]
        conn = http.client.HTTPConnection("127.0.0.1", self.moto_port, timeout=30)
        conn.request("POST", "/", body=request["body"], headers=headers)
        reply = conn.getresponse()
        raw = reply.read()
        parsed = PARSER.parse(
            {"status_code": reply.status, "headers": dict(reply.getheaders()), "body": raw},
            operation.output_shape,
        )
        parsed.pop("ResponseMetadata", None)
        if reply.status >= 300:
            error = parsed.get("Error", {})
            return self.answer(
                reply.status,
                {"__type": error.get("Code", "InternalFailure"), "message": error.get("Message", "")},
            )
        self.answer(200, parsed)

    def answer(self, status, document):
        payload = cbor2.dumps(document, datetime_as_timestamp=True, timezone=timezone.utc)
        self.send_response(status)
        self.send_header("smithy-protocol", "rpc-v2-cbor")
        self.send_header("Content-Type", "application/cbor")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def main():
    port_file = sys.argv[1]
    moto_port, front_port = free_port(), free_port()
    # moto's Step Functions engine calls the other services through this port.
    os.environ["MOTO_PORT"] = str(moto_port)
    fast_sqs_clock()
    serial_sqs_deletes()
    sfn_task_failure_cause()
    sfn_token_per_attempt()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    CloudWatchFront.moto_port = moto_port
    front = ThreadingHTTPServer(("127.0.0.1", front_port), CloudWatchFront)
    with open(port_file + ".tmp", "w") as f:
        json.dump({"moto": moto_port, "cloudwatch": front_port}, f)
    os.replace(port_file + ".tmp", port_file)
    front.serve_forever()


if __name__ == "__main__":
    main()
