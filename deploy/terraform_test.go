package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/agentbus/agentbus/events/rules"
)

const (
	tfRoot      = "../terraform"
	exampleDir  = "../terraform/examples/complete"
	serviceDir  = "../terraform/modules/service"
	brokenDir   = "testdata/broken"
	serviceName = "planner"
)

// The four services of `agentbus serve`.
var services = []string{"executor", "memory", "planner", "toolgateway"}

func loadModule(t *testing.T, dir string) *Module {
	t.Helper()
	m, err := LoadModule(dir)
	if err != nil {
		t.Fatalf("load %s: %v", dir, err)
	}
	return m
}

// TestModuleDirs guards the other tests against checking nothing: every
// module and the example are found.
func TestModuleDirs(t *testing.T) {
	t.Parallel()
	dirs, err := ModuleDirs(tfRoot)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range dirs {
		rel, _ := filepath.Rel(tfRoot, d)
		got = append(got, filepath.ToSlash(rel))
	}
	want := []string{"examples/complete", "modules/bus", "modules/cache", "modules/saga", "modules/service", "modules/state", "modules/subscriber"}
	if !slices.Equal(got, want) {
		t.Fatalf("module folders %v, want %v", got, want)
	}
}

func TestTerraformFormatted(t *testing.T) {
	t.Parallel()
	files, err := TFFiles(tfRoot)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("found only %d .tf files", len(files))
	}
	for _, err := range CheckFormat(files) {
		t.Error(err)
	}
}

// TestTerraformValid parses every module and checks references and module
// inputs as terraform validate would (without provider schemas).
func TestTerraformValid(t *testing.T) {
	t.Parallel()
	dirs, err := ModuleDirs(tfRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		for _, err := range CheckModule(d) {
			t.Error(err)
		}
	}
}

func TestEveryQueueHasDLQ(t *testing.T) {
	t.Parallel()
	dirs, err := ModuleDirs(tfRoot)
	if err != nil {
		t.Fatal(err)
	}
	queues := 0
	for _, d := range dirs {
		m := loadModule(t, d)
		for _, r := range m.Resources {
			if r.Labels[0] == "aws_sqs_queue" {
				queues++
			}
		}
		for _, err := range CheckDLQs(m) {
			t.Error(err)
		}
	}
	if queues == 0 {
		t.Fatal("no aws_sqs_queue found")
	}
}

func TestCatalogDeployedByExample(t *testing.T) {
	t.Parallel()
	catalog, err := rules.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	m := loadModule(t, exampleDir)
	deployed, err := SubscriberRules(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(deployed) != len(catalog) {
		t.Errorf("example deploys %d rules, catalog has %d", len(deployed), len(catalog))
	}
	for _, err := range CheckCatalogDeployed(m, catalog) {
		t.Error(err)
	}
}

// TestExampleRunsEveryService: the example wires the four services, and each
// has its own queue in the catalog.
func TestExampleRunsEveryService(t *testing.T) {
	t.Parallel()
	m := loadModule(t, exampleDir)
	ev, err := NewEvaluator(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ev.Local("services")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for it := v.ElementIterator(); it.Next(); {
		_, s := it.Element()
		got = append(got, s.AsString())
	}
	slices.Sort(got)
	if !slices.Equal(got, services) {
		t.Errorf("example services %v, want %v", got, services)
	}
	catalog, err := rules.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	specs, err := rules.Queues(catalog)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range services {
		if !slices.ContainsFunc(specs, func(q rules.QueueSpec) bool { return q.Name == s }) {
			t.Errorf("service %s has no queue in the rule catalog", s)
		}
	}
}

// TestIAMNamedActions: every policy document of every module names its
// actions; "*" resources only for the allow-listed actions. The service
// module is evaluated once per service (its statements depend on the name).
func TestIAMNamedActions(t *testing.T) {
	t.Parallel()
	dirs, err := ModuleDirs(tfRoot)
	if err != nil {
		t.Fatal(err)
	}
	statements := 0
	for _, d := range dirs {
		m := loadModule(t, d)
		varSets := []map[string]cty.Value{nil}
		if filepath.Base(d) == "service" {
			varSets = nil
			for _, s := range services {
				varSets = append(varSets, serviceTestVars(s))
			}
		}
		for _, vars := range varSets {
			ev, err := NewEvaluator(m, vars)
			if err != nil {
				t.Fatal(err)
			}
			statements += len(PolicyStatements(ev))
			for _, err := range CheckIAM(ev) {
				t.Error(err)
			}
		}
	}
	if statements < 10 {
		t.Fatalf("only %d policy statements found", statements)
	}
	for action, why := range StarResourceActions {
		if why == "" || strings.Contains(action, "*") {
			t.Errorf("allow-list entry %q needs a reason and a named action", action)
		}
	}
}

// TestServiceRoleIsAdapterUnion: each service's task role grants exactly the
// union of its adapters' declared IAM actions.
func TestServiceRoleIsAdapterUnion(t *testing.T) {
	t.Parallel()
	m := loadModule(t, serviceDir)
	for _, s := range services {
		want := ServiceActions(s)
		if len(want) == 0 {
			t.Fatalf("service %s: no actions declared", s)
		}
		for _, err := range CheckServiceRole(m, s, want) {
			t.Errorf("%s: %v", s, err)
		}
	}
	if !slices.Contains(ServiceActions("planner"), "bedrock:InvokeModel") || slices.Contains(ServiceActions("executor"), "bedrock:InvokeModel") {
		t.Error("only the planner may invoke the model")
	}
}

// TestIAMLocalsUpToDate: the committed iam_actions.auto.tf.json is what the
// generator writes from the adapters' IAMActions today.
func TestIAMLocalsUpToDate(t *testing.T) {
	t.Parallel()
	want, err := IAMLocalsJSON()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("..", IAMLocalsFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run go generate ./deploy", IAMLocalsFile)
	}
	for a, acts := range AdapterIAMActions() {
		if len(acts) == 0 {
			t.Errorf("adapter %s declares no IAM actions", a)
		}
	}
}

// TestCheckovSkipsJustified: every inline checkov skip carries a reason.
func TestCheckovSkipsJustified(t *testing.T) {
	t.Parallel()
	files, err := TFFiles(tfRoot)
	if err != nil {
		t.Fatal(err)
	}
	skip := regexp.MustCompile(`checkov:skip=([A-Z0-9_]+)(.*)`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range skip.FindAllSubmatch(b, -1) {
			reason := strings.TrimSpace(strings.TrimPrefix(string(m[2]), ":"))
			if len(reason) < 20 {
				t.Errorf("%s: checkov skip %s without a real justification", f, m[1])
			}
		}
	}
}

// TestBrokenFixturesFail proves the checks can fail: each fixture under
// testdata/broken is a small broken module, or a real module copied and
// broken in one place at test time (mutatedCopy), and the named check must
// report it.
func TestBrokenFixturesFail(t *testing.T) {
	t.Parallel()
	catalog, err := rules.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		dir   string
		check func(t *testing.T, dir string) []error
		want  string // substring of one reported error
	}{
		{"fmt_misaligned", formatCheck, "not formatted"},
		{"fmt_interpolation", formatCheck, "interpolation-only"},
		{"fmt_interpolation", formatCheck, "quoted type constraint"},
		{"undeclared_variable", func(t *testing.T, _ string) []error {
			dir := mutatedCopy(t, "../terraform/modules/subscriber", "main.tf",
				`"${var.name_prefix}-${var.name}"`, `"${var.queue_prefix}-${var.name}"`)
			return moduleCheck(t, dir)
		}, `undeclared input variable "queue_prefix"`},
		{"undeclared_input", moduleCheck, `unsupported argument "queue_name"`},
		{"undeclared_input", moduleCheck, `missing required argument "event_bus_name"`},
		{"missing_output", moduleCheck, `has no output "queue_id"`},
		{"each_without_for_each", moduleCheck, "only available where for_each is set"},
		{"each_without_for_each", moduleCheck, `provider "aws" is not in required_providers`},
		{"no_dlq", func(t *testing.T, dir string) []error { return CheckDLQs(loadModule(t, dir)) }, "has no DLQ"},
		{"wildcard_action", iamCheck, `action "sqs:*"`},
		{"wildcard_action", iamCheck, `s3:GetObject on Resource "*" is not in the allow-list`},
		{"wildcard_action", iamCheck, "must be data.aws_iam_policy_document.<name>.json"},
		{"service_extra_action", func(t *testing.T, _ string) []error {
			dir := mutatedCopy(t, serviceDir, "main.tf", `data "aws_iam_policy_document" "task" {
`, `data "aws_iam_policy_document" "task" {
  statement {
    sid       = "Extra"
    actions   = ["sqs:PurgeQueue"]
    resources = [var.queue_arn]
  }

`)
			return CheckServiceRole(loadModule(t, dir), serviceName, ServiceActions(serviceName))
		}, "sqs:PurgeQueue"},
		{"catalog_missing", func(t *testing.T, dir string) []error {
			return CheckCatalogDeployed(loadModule(t, dir), catalog)
		}, "memory-all-events is not deployed"},
		{"catalog_missing", func(t *testing.T, dir string) []error {
			return CheckCatalogDeployed(loadModule(t, dir), catalog)
		}, "extra-planner is deployed but not in the catalog"},
	}
	for _, tc := range cases {
		t.Run(tc.dir+"/"+tc.want, func(t *testing.T) {
			t.Parallel()
			errs := tc.check(t, filepath.Join(brokenDir, tc.dir))
			for _, err := range errs {
				if strings.Contains(err.Error(), tc.want) {
					return
				}
			}
			t.Errorf("want an error containing %q, got %v", tc.want, errs)
		})
	}
}

func formatCheck(t *testing.T, dir string) []error {
	files, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no .tf files in %s", dir)
	}
	return CheckFormat(files)
}

func moduleCheck(_ *testing.T, dir string) []error { return CheckModule(dir) }

func iamCheck(t *testing.T, dir string) []error {
	ev, err := NewEvaluator(loadModule(t, dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	return CheckIAM(ev)
}

// mutatedCopy copies the .tf and .tf.json files of module dir src into a
// temporary folder and replaces old with new (which must occur exactly once)
// in file: a real module broken in one place, so the fixture never drifts
// from the module it breaks.
func mutatedCopy(t *testing.T, src, file, old, new string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || !(strings.HasSuffix(e.Name(), ".tf") || strings.HasSuffix(e.Name(), ".tf.json")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == file {
			if n := strings.Count(string(b), old); n != 1 {
				t.Fatalf("%s/%s: %q occurs %d times, want once", src, file, old, n)
			}
			b = []byte(strings.Replace(string(b), old, new, 1))
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}
