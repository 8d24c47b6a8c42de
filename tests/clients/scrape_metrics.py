"""Scrapes sessiond's /metrics as Prometheus would and parses it with the Prometheus
project's own OpenMetrics parser (prometheus_client), so a malformed exposition fails here.

    python scrape_metrics.py http://127.0.0.1:PORT/metrics TOKEN

Prints one JSON object: {"unauthorized_status": <status without the token>,
"content_type": ..., "samples": [[name, {labels}, value], ...]}.
"""
import json
import sys
import urllib.error
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

url, token = sys.argv[1], sys.argv[2]

try:
    urllib.request.urlopen(url, timeout=10)
    unauthorized = 200
except urllib.error.HTTPError as e:
    unauthorized = e.code

req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
with urllib.request.urlopen(req, timeout=10) as r:
    content_type = r.headers.get("Content-Type")
    text = r.read().decode()

samples = []
for family in text_string_to_metric_families(text):
    for s in family.samples:
        samples.append([s.name, s.labels, s.value])
print(json.dumps({"unauthorized_status": unauthorized, "content_type": content_type, "samples": samples}))
