// Package testenv finds the servers that integration tests need (moto server
// as the local AWS stand-in, a real Redis). Outside CI a missing server skips
// the test with the command that starts it; under CI=true it fails the test,
// so a CI run can never pass by skipping.
package testenv

import (
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// motoSFNConfig makes moto run state machines (its embedded ASL
// interpreter) instead of returning canned executions.
const motoSFNConfig = `{"stepfunctions":{"execute_state_machine":true}}`

// StartCommand is what a developer runs to start the servers tests need.
const StartCommand = "make stack (scripts/stack.sh up)"

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips t (or fails it under CI) because what is absent.
func Missing(t testing.TB, what string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is not reachable; under CI=true this test must not skip (start it with %s)", what, StartCommand)
	}
	t.Skipf("%s is not reachable; start it with %s", what, StartCommand)
}

// AWSEndpoint returns the base URL of the local AWS stand-in (moto server):
// $AGENTBUS_TEST_AWS_ENDPOINT, else $AWS_ENDPOINT_URL, else http://127.0.0.1:5000.
// Tests use it with static credentials test/test in region us-east-1.
func AWSEndpoint(t testing.TB) string {
	t.Helper()
	ep := firstNonEmpty(os.Getenv("AGENTBUS_TEST_AWS_ENDPOINT"), os.Getenv("AWS_ENDPOINT_URL"), "http://127.0.0.1:5000")
	c := http.Client{Timeout: 10 * time.Second}
	// /moto-api/ is moto's dashboard page: cheap, unlike data.json, which
	// serialises the whole shared server state.
	resp, err := c.Get(strings.TrimSuffix(ep, "/") + "/moto-api/")
	if err != nil {
		Missing(t, "moto server at "+ep)
		return ""
	}
	resp.Body.Close()
	return ep
}

// MotoStepFunctions makes the moto server at endpoint (from AWSEndpoint)
// execute Step Functions state machines for real, as scripts/stack.sh up
// does, so a test that runs executions does not depend on how moto was
// started. The setting is server-wide and idempotent; moto's GET of
// /moto-api/config does not show it, so it is set rather than checked.
func MotoStepFunctions(t testing.TB, endpoint string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Post(strings.TrimSuffix(endpoint, "/")+"/moto-api/config", "application/json", strings.NewReader(motoSFNConfig))
	if err != nil {
		t.Fatalf("enable moto Step Functions execution: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("enable moto Step Functions execution: HTTP %d", resp.StatusCode)
	}
}

// RedisAddr returns host:port of a Redis server:
// $AGENTBUS_TEST_REDIS_ADDR, else $AGENTBUS_REDIS_ADDR, else 127.0.0.1:6379.
func RedisAddr(t testing.TB) string {
	t.Helper()
	addr := firstNonEmpty(os.Getenv("AGENTBUS_TEST_REDIS_ADDR"), os.Getenv("AGENTBUS_REDIS_ADDR"), "127.0.0.1:6379")
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		Missing(t, "redis-server at "+addr)
		return ""
	}
	conn.Close()
	return addr
}

// SharedFile returns the path of the read-only ../shared folder (conformance
// data) relative to the module root, skipping (or failing under CI) when a
// user's clone does not have it. rel is joined to it, e.g.
// "conformance/eventbridge-patterns/cases.jsonl".
func SharedFile(t testing.TB, moduleRoot, rel string) string {
	t.Helper()
	p := moduleRoot + "/../shared/" + rel
	if _, err := os.Stat(p); err != nil {
		if InCI() {
			t.Fatalf("%s is required under CI=true: %v", p, err)
		}
		t.Skipf("%s not found (it ships beside the project root in CI, not in a user's clone)", p)
	}
	return p
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
