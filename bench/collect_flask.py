"""The seeds' collector design, for bench/collect to measure sluice against: Flask under
gunicorn, each request's events appended to one file (a line each) and fsynced before the
answer. Its file is its lake. Run: gunicorn -w 4 'collect_flask:app' with EVENTS_FILE set."""

import json
import os
import time

from flask import Flask, jsonify, request

app = Flask(__name__)
PATH = os.environ["EVENTS_FILE"]


@app.post("/batch")
def batch():
    body = request.get_json(force=True)
    received = time.time()
    lines = "".join(json.dumps({**event, "receivedAt": received}) + "\n" for event in body["batch"])
    with open(PATH, "a") as f:
        f.write(lines)
        f.flush()
        os.fsync(f.fileno())
    return jsonify(accepted=len(body["batch"]))
