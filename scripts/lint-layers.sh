#!/usr/bin/env bash
# scripts/lint-layers.sh GOLANGCI: prove the layer rules still bite. It copies the working tree
# (tracked and new files, as they are now), plants one forbidden import per rule in the copy and
# expects golangci-lint's depguard to flag every one of them. A rule whose file pattern stops
# matching, or an allow list that grew too wide, fails here instead of rotting silently.
set -euo pipefail

lint=$(realpath "${1:?usage: scripts/lint-layers.sh PATH-TO-GOLANGCI-LINT}")
top=$(git rev-parse --show-toplevel)
mod=$(cd "$top" && go list -m)
copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT

# The copy holds what `git ls-files` lists plus untracked, not-ignored files: the change under review.
# (A tracked file deleted in the working tree is left out.)
cd "$top"
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
  xargs -0 cp --parents -t "$copy"

# DIR IMPORT: an outward or sideways import, chosen so the copy still type-checks (no cycle).
plants=(
  "service adapters/postgres"
  "service ports/http"
  "application adapters/metrics"
  "application/ops adapters/datadir"
  "domain/product github.com/jackc/pgx/v5"
  "api/envelope application/command"
  "ports/http ports/grpc"
  "ports/grpc adapters/postgres"
  "adapters/bleve adapters/postgres"
  "adapters/kafka adapters/elasticsearch"
  "adapters/memory internal/testenv"
  "service internal/readmodeltest"
)
expect=()
for p in "${plants[@]}"; do
  read -r dir imp <<<"$p"
  case "$imp" in *.*) ;; *) imp="$mod/$imp" ;; esac
  pkg=$(cd "$copy/$dir" && go list -f '{{.Name}}' .)
  n=${#expect[@]}
  printf 'package %s\n\nimport _ "%s"\n' "$pkg" "$imp" >"$copy/$dir/zz_planted_$n.go"
  expect+=("$dir/zz_planted_$n.go|$imp")
done

cd "$copy"
out=$("$lint" run --allow-parallel-runners --enable-only depguard ./... 2>&1) || true
missed=0
for e in "${expect[@]}"; do
  file=${e%%|*} imp=${e#*|}
  if ! grep -qE "^$file:.*'$imp'" <<<"$out"; then
    echo "lint-layers: depguard did not flag the planted import of $imp in $file"
    missed=1
  fi
done
if [ "$missed" = 1 ]; then
  echo "lint-layers: golangci-lint said:"; head -40 <<<"$out"
  exit 1
fi
echo "lint-layers: ${#expect[@]} planted forbidden imports, each flagged"
