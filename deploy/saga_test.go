package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/events/rules"
	"github.com/agentbus/agentbus/platform/saga/stepfunctions"
	"github.com/agentbus/agentbus/saga"
)

const sagaDir = "../terraform/modules/saga"

func TestSagaModule(t *testing.T) {
	t.Parallel()
	for _, err := range CheckSagaModule(loadModule(t, sagaDir)) {
		t.Error(err)
	}
	for _, a := range append(slices.Clone(SagaLogDeliveryActions), SagaTracingActions...) {
		if StarResourceActions[a] == "" {
			t.Errorf("%s is not in the Resource \"*\" allow-list", a)
		}
	}
}

// TestExampleSagas: the example deploys every example saga and gives the
// tool-gateway exactly the Step Functions runner's and worker's actions.
func TestExampleSagas(t *testing.T) {
	t.Parallel()
	defs, err := saga.Load(os.DirFS("../examples/sagas"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range defs {
		names = append(names, d.Name)
	}
	slices.Sort(names)
	want := slices.Sorted(slices.Values(append(slices.Clone(stepfunctions.RunnerIAMActions), stepfunctions.WorkerIAMActions...)))
	want = slices.Compact(want)
	for _, err := range CheckExampleSagas(loadModule(t, exampleDir), names, want) {
		t.Error(err)
	}
}

// TestExampleSagaRouting: with the sagas offered, the example routes calls
// of exactly the example sagas to the tool-gateway's queue; without, it
// deploys only the catalog.
func TestExampleSagaRouting(t *testing.T) {
	t.Parallel()
	catalog, err := rules.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range CheckExampleSagaRouting(loadModule(t, exampleDir), exampleSagaNames(t), catalog) {
		t.Error(err)
	}
}

// TestExampleSagaRoutingFails: the routing check reports broken copies of
// the example.
func TestExampleSagaRoutingFails(t *testing.T) {
	t.Parallel()
	catalog, err := rules.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, old, new, want string }{
		{"always on", `var.saga_definitions_dir != null && length(local.sagas) > 0 ?`, `length(local.sagas) > 0 ?`, "without saga_definitions_dir the example deploys rule " + SagaRuleName},
		{"missing", `}, each.key == "toolgateway" ? local.saga_rules : {})`, `}, {})`, "deploys no rule " + SagaRuleName},
		{"wrong queue", `each.key == "toolgateway" ? local.saga_rules`, `each.key == "planner" ? local.saga_rules`, "targets queue planner"},
		{"hard-coded names", `toolname = sort(local.sagas)`, `toolname = ["book_trip", "other_saga"]`, "other_saga"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := mutatedCopy(t, exampleCopy(t), "main.tf", c.old, c.new)
			errs := CheckExampleSagaRouting(loadModule(t, dir), exampleSagaNames(t), catalog)
			for _, err := range errs {
				if strings.Contains(err.Error(), c.want) {
					return
				}
			}
			t.Errorf("want an error containing %q, got %v", c.want, errs)
		})
	}
	// The unbroken copy passes (so the cases above fail for their change).
	if errs := CheckExampleSagaRouting(loadModule(t, exampleCopy(t)), exampleSagaNames(t), catalog); len(errs) > 0 {
		t.Errorf("unbroken copy: %v", errs)
	}
}

// exampleCopy copies the example to a temporary folder whose rule catalog
// and generated sagas are the real ones (the relative paths of a copy would
// find none).
func exampleCopy(t *testing.T) string {
	t.Helper()
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	dir := mutatedCopy(t, exampleDir, "main.tf", `sagas_dir = "${path.module}/../../sagas"`, `sagas_dir = "`+abs("../terraform/sagas")+`"`)
	return mutatedCopy(t, dir, "main.tf", `rules_dir = "${path.module}/../../../events/rules"`, `rules_dir = "`+abs("../events/rules")+`"`)
}

// exampleSagaNames are the names of the sagas in examples/sagas, sorted.
func exampleSagaNames(t *testing.T) []string {
	t.Helper()
	defs, err := saga.Load(os.DirFS("../examples/sagas"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range defs {
		names = append(names, d.Name)
	}
	slices.Sort(names)
	if len(names) == 0 {
		t.Fatal("no example sagas")
	}
	return names
}

// TestSagaChecksFail: the saga checks report a broken copy of the module
// or the example.
func TestSagaChecksFail(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		src, file string
		old, new  string
		check     func(dir string) []error
		want      string
	}{
		{"queue wildcard", sagaDir, "main.tf", `resources = [var.queue_arn]`, `resources = ["arn:aws:sqs:*"]`, sagaCheck(t), "want only the saga queue"},
		{"extra action", sagaDir, "main.tf", `actions   = ["sqs:SendMessage"]`, `actions   = ["sqs:SendMessage", "sqs:ReceiveMessage"]`, sagaCheck(t), "nothing else"},
		{"extra star action", sagaDir, "main.tf", `"logs:UpdateLogDelivery",`, `"logs:UpdateLogDelivery", "logs:PutLogEvents",`, sagaCheck(t), "want exactly the log delivery"},
		{"express", sagaDir, "main.tf", `type     = "STANDARD"`, `type     = "EXPRESS"`, sagaCheck(t), `must be type = "STANDARD"`},
		{"no tracing", sagaDir, "main.tf", "    enabled = true\n", "    enabled = false\n", sagaCheck(t), "must enable tracing"},
		{"inline definition", sagaDir, "main.tf", "definition = templatefile(var.definition_file, {", "definition = jsonencode({ x = var.definition_file }) \n  unused = ({", sagaCheck(t), "templatefile(var.definition_file"},
		{"no sagas found", exampleDir, "main.tf", `"*.asl.json.tftpl"`, `"*.nothing"`, exampleSagaCheck(t), "example deploys sagas []"},
		{"toolgateway extra", exampleDir, "main.tf", `actions   = ["states:StartExecution"]`, `actions   = ["states:StartExecution", "states:StopExecution"]`, exampleSagaCheck(t), "states:StopExecution"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := mutatedCopy(t, c.src, c.file, c.old, c.new)
			errs := c.check(dir)
			for _, err := range errs {
				if strings.Contains(err.Error(), c.want) {
					return
				}
			}
			t.Errorf("want an error containing %q, got %v", c.want, errs)
		})
	}
}

func sagaCheck(t *testing.T) func(string) []error {
	return func(dir string) []error { return CheckSagaModule(loadModule(t, dir)) }
}

func exampleSagaCheck(t *testing.T) func(string) []error {
	return func(dir string) []error {
		want := slices.Sorted(slices.Values(append(slices.Clone(stepfunctions.RunnerIAMActions), stepfunctions.WorkerIAMActions...)))
		return CheckExampleSagas(loadModule(t, dir), []string{"book_trip"}, slices.Compact(want))
	}
}
