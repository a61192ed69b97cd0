# The shell steps of the quickstart (README.md, docs/quickstart.md), from the
# root of a checkout. Each region is typed in its own terminal, in order; it is
# not a script to run whole. tests/test_examples.py runs each region for real.
echo "type each step of docs/quickstart.md in its own terminal" >&2
exit 1

# [start install]
pip install -e '.[flask,server]'
# [end install]

# [start billing]
python examples/make_keys.py keys   # keys/billing.key, keys/orders.key, keys/trust.json
export MSCOMM_TRUST=$PWD/keys/trust.json MSCOMM_REGISTRY=$PWD/registry.json
BILLING_PRIVATE_KEY_FILE=$PWD/keys/billing.key \
    gunicorn -c examples/gunicorn.conf.py -w 2 -b 127.0.0.1:8001 --pythonpath examples flask_service:app
# [end billing]

# [start orders]
export MSCOMM_TRUST=$PWD/keys/trust.json MSCOMM_REGISTRY=$PWD/registry.json
mscomm registry register billing http://127.0.0.1:8001
ORDERS_PRIVATE_KEY_FILE=$PWD/keys/orders.key python examples/client_call.py
# [end orders]
