"""Verifies webhook deliveries with the official Standard Webhooks library.

Reads one JSON object from standard input, {"secret": "whsec_...",
"headers": {...}, "body": "..."}, and prints one JSON line: {"ok": true,
"payload": <the verified body>} or {"ok": false, "error": "..."}. Used by
crates/credence/tests/api/webhooks.rs, so that Credence's signatures are
checked by the specification's own code rather than by ours.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> None:
    request = json.load(sys.stdin)
    try:
        payload = Webhook(request["secret"]).verify(request["body"], request["headers"])
    except WebhookVerificationError as error:
        print(json.dumps({"ok": False, "error": str(error)}))
        return
    print(json.dumps({"ok": True, "payload": payload}))


if __name__ == "__main__":
    main()
