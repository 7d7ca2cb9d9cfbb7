#!/usr/bin/env bash
# The four methods with curl alone, against a running server (default http://127.0.0.1:8000).
set -euo pipefail
URL=${1:-http://127.0.0.1:8000}
J='Content-Type: application/json'
X='[[0.1, 1000, 90000, 1000, 90, 760, 1400, 11000], [0.12, 2000, 80000, 1050, 80, 780, 1300, 10000]]'

echo "# the models"
curl -sf "$URL/models" | head -c 300; echo

echo "# get_weights (the ETag header is the version)"
curl -sfi "$URL/models/borehole/weights" | grep -i '^etag'

echo "# evaluate"
curl -sf -X POST "$URL/models/borehole/evaluate" -H "$J" -d "{\"x\": $X}"; echo

echo "# forward_derivative with dx only (dw = 0): the sensitivity to the first input"
P=$(curl -sf "$URL/models/borehole" | python3 -c 'import json,sys; print(json.load(sys.stdin)["n_weights"])')
DW=$(python3 -c "print([0.0]*$P)")
curl -sf -X POST "$URL/models/borehole/forward_derivative" -H "$J" \
     -d "{\"x\": $X, \"dw\": $DW, \"dx\": [[1,0,0,0,0,0,0,0],[1,0,0,0,0,0,0,0]]}"; echo

echo "# gradient: px is d(sum of outputs)/dx per row"
curl -sf -X POST "$URL/models/borehole/gradient" -H "$J" -d "{\"x\": $X, \"py\": [[1], [1]]}" \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); print("px =", d["px"]); print("len(pw) =", len(d["pw"]))'

echo "# an error: the body names what was wrong"
curl -s -X POST "$URL/models/borehole/evaluate" -H "$J" -d '{"x": [[1, 2, 3]]}'; echo
