"""billing, a Flask service that accepts only sealed calls from the callers it names.

Run it with gunicorn (see the README or docs/quickstart.md):

    BILLING_PRIVATE_KEY_FILE=$PWD/keys/billing.key \
        gunicorn -w 2 -b 127.0.0.1:8001 --pythonpath examples flask_service:app
"""

# [start app]
from flask import Flask, jsonify, request

from mscomm_sync import EncryptionMiddleware
from mscomm_sync.flask import current_caller

app = Flask(__name__)


@app.post("/api/v1/charge")
def charge():
    return jsonify(charged=request.get_json()["amount"], caller=current_caller())


@app.get("/health")  # exempt from sealing by default, for load balancers
def health():
    return "ok"


# Every other route now takes only sealed requests, from the callers the trust
# file names for billing (or allowed_callers=[...]); a call with an idempotency
# key runs at most once per caller and key.
app.wsgi_app = EncryptionMiddleware(app.wsgi_app, service_name="billing", idempotency=True)
# [end app]
