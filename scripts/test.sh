#!/bin/sh
# npm test: every test (tap, embedded store); then, when STAGEHUB_TEST_MONGO_URL names a MongoDB (or the
# MongoDB-compatible test server, ../shared/mongo-test), the end-to-end set again on it (npm run
# test:mongodb). With arguments (npm test -- test/x.test.ts), only tap with them.
if [ "$#" -gt 0 ]; then exec tap "$@"; fi
tap
status=$?
if [ -n "${STAGEHUB_TEST_MONGO_URL:-}" ]; then
  echo "# the end-to-end set on MongoDB ($STAGEHUB_TEST_MONGO_URL)"
  npm run --silent test:mongodb || status=1
fi
exit "$status"
