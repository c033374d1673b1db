#!/usr/bin/env python3
"""Send a referral to Signpost as a FHIR transaction Bundle with the SMART on
FHIR Python client, fhirclient, exactly as a practice system using it would:
`Bundle.create` posts a transaction to the server's base URL (`/fhir/`).

Environment:
  SIGNPOST_FHIR_BASE  Signpost's FHIR base URL, e.g. http://127.0.0.1:8080/fhir
  SIGNPOST_TOKEN      the referrer's bearer token (signpost tokens create)

Run:  python3 send_referral.py BUNDLE.json   (prints the transaction-response)
"""

import json
import os
import sys

from fhirclient import client
from fhirclient.auth import FHIROAuth2Auth
from fhirclient.models.bundle import Bundle

# Configured the ordinary way: fhirclient keeps the base URL with a trailing
# slash, and posts a transaction Bundle to that base itself (POST /fhir/).
smart = client.FHIRClient(
    settings={"app_id": "practice-system", "api_base": os.environ["SIGNPOST_FHIR_BASE"]}
)
# A token obtained beforehand (as a SMART backend service holds one), given to
# fhirclient's own OAuth2 auth, which sends it as a bearer token.
smart.server.auth = FHIROAuth2Auth(state={"access_token": os.environ["SIGNPOST_TOKEN"]})
assert smart.server.base_uri.endswith("/")

with open(sys.argv[1], encoding="utf-8") as f:
    bundle = Bundle(json.load(f))  # checked against fhirclient's R4 models

response = bundle.create(smart.server)
answer = Bundle(response)  # the transaction-response, parsed the same way
print(json.dumps(answer.as_json()))
