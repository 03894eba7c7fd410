package saga

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// terraformSagas is where the generated state machines the Terraform saga
// module deploys are committed, one "<saga>.asl.json.tftpl" per example
// saga.
const terraformSagas = "../terraform/sagas"

// renderTemplate evaluates a Terraform template file the way
// templatefile(path, {queue_url = url}) does (HCL template syntax).
func renderTemplate(t *testing.T, src []byte, url string) []byte {
	t.Helper()
	expr, diags := hclsyntax.ParseTemplate(src, "template", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("not a Terraform template: %v", diags)
	}
	v, diags := expr.Value(&hcl.EvalContext{Variables: map[string]cty.Value{QueueURLVariable: cty.StringVal(url)}})
	if diags.HasErrors() {
		t.Fatalf("template does not render: %v", diags)
	}
	return []byte(v.AsString())
}

// TestTerraformTemplatesUpToDate: every example saga has its committed
// template, byte for byte what TerraformTemplate writes today (regenerate
// with go test ./saga -update), and the template renders — as Terraform's
// templatefile would — to exactly ASL(definition, queue URL).
func TestTerraformTemplatesUpToDate(t *testing.T) {
	t.Parallel()
	defs, err := Load(os.DirFS("../examples/sagas"))
	if err != nil {
		t.Fatal(err)
	}
	if len(defs) == 0 {
		t.Fatal("no example sagas")
	}
	want := map[string]bool{}
	for _, d := range defs {
		file := filepath.Join(terraformSagas, d.Name+".asl.json.tftpl")
		want[filepath.Base(file)] = true
		tmpl, err := TerraformTemplate(d)
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			if err := os.MkdirAll(terraformSagas, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, tmpl, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%v (run go test ./saga -update)", err)
		}
		if !bytes.Equal(got, tmpl) {
			t.Errorf("%s is stale: run go test ./saga -update", file)
		}
		const url = "https://sqs.eu-west-1.amazonaws.com/210987654321/prod-saga"
		asl, err := ASL(d, url)
		if err != nil {
			t.Fatal(err)
		}
		if r := renderTemplate(t, got, url); !bytes.Equal(r, asl) {
			t.Errorf("%s rendered with queue_url differs from ASL(%s)", file, d.Name)
		}
	}
	entries, err := os.ReadDir(terraformSagas)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !want[e.Name()] {
			t.Errorf("%s/%s has no saga definition in examples/sagas", terraformSagas, e.Name())
		}
	}
}

// TestTerraformTemplateEscapes: literal "${" and "%{" in a definition
// survive templatefile unchanged (the nested_templates shape has both).
func TestTerraformTemplateEscapes(t *testing.T) {
	t.Parallel()
	d := mustParseFile(t, "testdata/nested_templates.json")
	tmpl, err := TerraformTemplate(d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(tmpl), "$${not_terraform} %%{ if x }") || strings.Count(string(tmpl), "${queue_url}") != 3 {
		t.Fatalf("template:\n%s", tmpl)
	}
	asl, err := ASL(d, "https://q.example/x")
	if err != nil {
		t.Fatal(err)
	}
	if r := renderTemplate(t, tmpl, "https://q.example/x"); !bytes.Equal(r, asl) {
		t.Fatalf("rendered template differs from ASL:\n%s", r)
	}
	// A definition that contains the placeholder's sentinel is refused
	// rather than templated wrongly.
	bad := d
	bad.Steps = append([]Step(nil), d.Steps...)
	bad.Steps[1].Action.Input = []byte(`{"x":"\u0000queue-url\u0000"}`)
	if _, err := TerraformTemplate(bad); err == nil {
		t.Error("TerraformTemplate accepted a definition containing its sentinel")
	}
}
