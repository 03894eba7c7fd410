package agentbusv1_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// TestGeneratedCodeIsFresh regenerates the Go code into a temporary folder
// with scripts/protoc.sh and compares it with the committed files. It needs
// protoc (Debian: protobuf-compiler) and skips without it, also under CI,
// which does not install protoc: the committed files are the source of truth
// for builds, and this test catches a .proto edited without regenerating.
func TestGeneratedCodeIsFresh(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		t.Skip("protoc not installed (apt-get install protobuf-compiler); generated code not checked")
	}
	if testing.Short() {
		t.Skip("-short: regenerating may install the protoc plug-ins from the module proxy")
	}
	_, file, _, _ := runtime.Caller(0)
	here := filepath.Dir(file)
	root := filepath.Join(here, "..", "..", "..")
	// Read the .proto here so that go test's cache sees it change (protoc
	// reads it in a subprocess, which the cache does not track).
	if _, err := os.ReadFile(filepath.Join(here, "agentbus.proto")); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command(filepath.Join(root, "scripts", "protoc.sh"), out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/protoc.sh: %v\n%s", err, b)
	}
	for _, name := range []string{"agentbus.pb.go", "agentbus_grpc.pb.go"} {
		fresh, err := os.ReadFile(filepath.Join(out, "proto", "agentbus", "v1", name))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join(here, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(stripToolVersions(fresh), stripToolVersions(committed)) {
			t.Errorf("%s is stale: run scripts/protoc.sh and commit the result", name)
		}
	}
}

// stripToolVersions drops the header lines naming the protoc version, which
// differs between machines without changing the code.
func stripToolVersions(b []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("// \tprotoc ")) || bytes.HasPrefix(line, []byte("// - protoc ")) {
			continue
		}
		out = append(out, line)
	}
	return bytes.Join(out, []byte("\n"))
}
