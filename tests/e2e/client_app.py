"""Client-mode PySpark app for the e2e test: the driver runs here, on loopback, and asks the
API-server stand-in for executor pods. It waits (bounded) until the stand-in has stored the
executors it asked for, then stops; executors never start, since there are no nodes."""
import json
import os
import sys
import time
import urllib.request

from pyspark.sql import SparkSession

standin = os.environ["E2E_STANDIN_URL"]
want = int(os.environ.get("E2E_EXECUTORS", "2"))
deadline = time.monotonic() + float(os.environ.get("E2E_WAIT_SECONDS", "60"))

spark = SparkSession.builder.getOrCreate()
app_id = spark.sparkContext.applicationId
seen = 0
while time.monotonic() < deadline:
    with urllib.request.urlopen(standin + "/_standin/pods", timeout=5) as resp:
        pods = json.load(resp)
    seen = sum(
        1
        for p in pods
        if p["metadata"].get("labels", {}).get("spark-app-selector") == app_id
        and p["metadata"]["labels"].get("spark-role") == "executor"
    )
    if seen >= want:
        break
    time.sleep(0.5)
spark.stop()
print(json.dumps({"appId": app_id, "executors": seen}))
sys.exit(0 if seen >= want else 3)
