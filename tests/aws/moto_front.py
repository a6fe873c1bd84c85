"""The local AWS endpoint of the tests: moto in server mode, plus a front for CloudWatch.

The Rust SDK's CloudWatch client speaks only the Smithy RPC v2 CBOR protocol, which moto
does not serve. The front accepts those requests, re-encodes them in the JSON protocol
that moto's CloudWatch does serve (with botocore's own serializer and parser, driven by
the service model), and answers in CBOR. Everything else goes to moto directly.

The front also passes any other request on to moto as it is, failing the calls a test
asks it to: a test points one service of the process it runs at the front
(`AWS_ENDPOINT_URL_SQS`) and arms a fault for its own queue with
`POST /_sluice/faults {"queue": NAME, "operation": "ReceiveMessage", "pass": N, "fail": M}`:
of that queue's calls of that operation, the next N reach moto and the M after them are
answered 500 InternalFailure without reaching it (so a failed receive changes no
message). `{"queue": NAME, "operation": ..., "clear": true}` disarms it. Either answers
the rule's counts: `calls` seen, `failed` answered 500.

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


def sqs_pending_groups_snapshot():
    """moto's SQS reads the message groups in flight by iterating the queue's set of
    in-flight messages while concurrent receives add to it: a receive then fails with
    "Set changed size during iteration" (a 500), the more likely the more messages a run
    holds (and a run holds all it received until its commit). Iterating a copy, taken at
    once, is the whole change; SQS serves concurrent receives without such errors."""

    def pending_message_groups(queue):
        return {m.group_id for m in list(queue._pending_messages) if m.group_id is not None}

    moto.sqs.models.Queue.pending_message_groups = property(pending_message_groups)


FAULTS_PATH = "/_sluice/faults"
# (queue name, operation) -> {"pass": calls to let through, "fail": calls to fail after
# them, "calls": calls seen, "failed": calls failed}
FAULTS = {}
FAULTS_LOCK = threading.Lock()


def arm_fault(request):
    key = (request["queue"], request["operation"])
    with FAULTS_LOCK:
        if request.get("clear"):
            rule = FAULTS.pop(key, None) or {"calls": 0, "failed": 0}
        else:
            rule = FAULTS.setdefault(key, {"calls": 0, "failed": 0})
            rule["pass"] = int(request.get("pass", 0))
            rule["fail"] = int(request.get("fail", 0))
        return {"calls": rule["calls"], "failed": rule["failed"]}


def injected_fault(queue, operation):
    """Whether this call is one to fail (and counts it)."""
    with FAULTS_LOCK:
        rule = FAULTS.get((queue, operation))
        if rule is None:
            return False
        rule["calls"] += 1
        if rule["pass"] > 0:
            rule["pass"] -= 1
            return False
        if rule["fail"] <= 0:
            return False
        rule["fail"] -= 1
        rule["failed"] += 1
        return True


class CloudWatchFront(BaseHTTPRequestHandler):
    moto_port = 0
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == FAULTS_PATH:
            return self.reply(200, "application/json", json.dumps(arm_fault(json.loads(body))).encode())
        if not self.path.startswith(PREFIX):
            return self.forward(body)
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

    def forward(self, body):
        """Passes a request of another service on to moto (the JSON protocol: the
        operation in X-Amz-Target, the queue in the body's QueueUrl), unless it is a call
        a test armed a fault for."""
        operation = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
        try:
            queue = str(json.loads(body or b"{}").get("QueueUrl", "")).rstrip("/").rsplit("/", 1)[-1]
        except (ValueError, AttributeError):
            queue = ""
        if injected_fault(queue, operation):
            document = {"__type": "InternalFailure", "message": "failed by the test front (an armed fault)"}
            return self.reply(500, "application/x-amz-json-1.0", json.dumps(document).encode())
        skip = {"host", "content-length", "connection", "content-encoding"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        conn = http.client.HTTPConnection("127.0.0.1", self.moto_port, timeout=60)
        conn.request("POST", self.path, body=body, headers=headers)
        reply = conn.getresponse()
        raw = reply.read()
        conn.close()
        self.send_response(reply.status)
        for name, value in reply.getheaders():
            if name.lower() not in {"content-length", "transfer-encoding", "connection", "date", "server"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def reply(self, status, content_type, payload):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

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
    sqs_pending_groups_snapshot()
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
