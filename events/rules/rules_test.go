package rules

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
)

const goodRule = `{"name":"x-rule","description":"d","eventPattern":{"source":["a"]},"target":{"queue":"q","maxReceiveCount":3,"visibilityTimeoutSeconds":10}}`

func TestLoadDefaultsAndSort(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"x-rule.json": {Data: []byte(goodRule)},
		"a-rule.json": {Data: []byte(`{"name":"a-rule","description":"d","eventPattern":{"source":["a"]},"target":{"queue":"q2"}}`)},
		"README.md":   {Data: []byte("not a rule")},
		"sub/z.json":  {Data: []byte("not read: only the root is")},
	}
	rs, err := Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Name != "a-rule" || rs[1].Name != "x-rule" {
		t.Fatalf("rules = %+v", rs)
	}
	if rs[0].Target.MaxReceiveCount != DefaultMaxReceiveCount || rs[0].Target.VisibilityTimeoutSeconds != DefaultVisibilityTimeoutSeconds {
		t.Errorf("defaults not applied: %+v", rs[0].Target)
	}
	if rs[1].Target.MaxReceiveCount != 3 || rs[1].Target.VisibilityTimeoutSeconds != 10 {
		t.Errorf("explicit settings changed: %+v", rs[1].Target)
	}
	empty, err := Load(fstest.MapFS{})
	if err != nil || len(empty) != 0 {
		t.Errorf("empty dir: %v, %v", empty, err)
	}
}

func TestLoadRejects(t *testing.T) {
	t.Parallel()
	rule := func(name, desc, pattern, target string) string {
		return `{"name":"` + name + `","description":"` + desc + `","eventPattern":` + pattern + `,"target":` + target + `}`
	}
	okTarget := `{"queue":"q"}`
	okPattern := `{"source":["a"]}`
	cases := []struct {
		name, file, body, want string
	}{
		{"not json", "r.json", `{`, "unexpected EOF"},
		{"mis-cased field", "r.json", `{"name":"r","description":"d","eventpattern":{"source":["a"]},"target":{"queue":"q"}}`, `unknown field(s) eventpattern`},
		{"unknown target field", "r.json", rule("r", "d", okPattern, `{"queue":"q","dlq":true}`), `unknown field(s) target.dlq`},
		{"target not object", "r.json", rule("r", "d", okPattern, `"q"`), `target:`},
		{"trailing data", "r.json", rule("r", "d", okPattern, okTarget) + `{}`, "trailing data"},
		{"file name differs", "other.json", rule("r", "d", okPattern, okTarget), "must be named r.json"},
		{"empty name", ".json", rule("", "d", okPattern, okTarget), "name is empty"},
		{"bad name chars", "a b.json", rule("a b", "d", okPattern, okTarget), "EventBridge rule name"},
		{"long name", strings.Repeat("n", 65) + ".json", rule(strings.Repeat("n", 65), "d", okPattern, okTarget), "longer than 64"},
		{"empty description", "r.json", rule("r", " ", okPattern, okTarget), "description is empty"},
		{"long description", "r.json", rule("r", strings.Repeat("d", 513), okPattern, okTarget), "description is longer"},
		{"missing pattern", "r.json", `{"name":"r","description":"d","target":{"queue":"q"}}`, "eventPattern: missing"},
		{"pattern not object", "r.json", rule("r", "d", `["a"]`, okTarget), "not a JSON object"},
		{"empty pattern", "r.json", rule("r", "d", `{}`, okTarget), "empty"},
		{"huge pattern", "r.json", rule("r", "d", `{"source":["`+strings.Repeat("a", 5000)+`"]}`, okTarget), "longer than 4096"},
		{"routes on data", "r.json", rule("r", "d", `{"detail":{"data":{"tool":["x"]}}}`, okTarget), `"detail.data"`},
		{"routes on data dotted", "r.json", rule("r", "d", `{"detail.data.x":["y"]}`, okTarget), `"detail.data.x"`},
		{"routes on data in nested $or", "r.json", rule("r", "d", `{"detail":{"$or":[{"sessionid":["s"]},{"data":{"x":[1]}}]}}`, okTarget), `"detail.data"`},
		{"routes on data in $or", "r.json", rule("r", "d", `{"$or":[{"source":["a"]},{"detail":{"data":{"x":[1]}}}]}`, okTarget), `"detail.data"`},
		{"empty queue", "r.json", rule("r", "d", okPattern, `{"queue":""}`), "target.queue"},
		{"uppercase queue", "r.json", rule("r", "d", okPattern, `{"queue":"Planner"}`), "target.queue"},
		{"negative receives", "r.json", rule("r", "d", okPattern, `{"queue":"q","maxReceiveCount":-1}`), "maxReceiveCount -1"},
		{"too many receives", "r.json", rule("r", "d", okPattern, `{"queue":"q","maxReceiveCount":1001}`), "maxReceiveCount 1001"},
		{"visibility too long", "r.json", rule("r", "d", okPattern, `{"queue":"q","visibilityTimeoutSeconds":50000}`), "visibilityTimeoutSeconds 50000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(fstest.MapFS{tc.file: {Data: []byte(tc.body)}})
			if !errors.Is(err, ErrInvalidRule) {
				t.Fatalf("err = %v, want ErrInvalidRule", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to mention %q", err, tc.want)
			}
			if tc.file != ".json" && !strings.Contains(err.Error(), tc.file) && !strings.Contains(err.Error(), `"r"`) {
				t.Errorf("err = %q names neither the file nor the rule", err)
			}
		})
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := Load(fstest.MapFS{
		"a.json": {Data: []byte(`{`)},
		"b.json": {Data: []byte(`{"name":"b","description":"","eventPattern":{},"target":{"queue":""}}`)},
	})
	for _, want := range []string{"a.json", "description is empty", "eventPattern: empty", "target.queue"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q in it", err, want)
		}
	}
}

func TestMerge(t *testing.T) {
	t.Parallel()
	a := []Rule{{Name: "b"}, {Name: "a"}}
	got, err := Merge(a, []Rule{{Name: "c"}})
	if err != nil || len(got) != 3 || got[0].Name != "a" || got[2].Name != "c" {
		t.Errorf("Merge = %v, %v", got, err)
	}
	if _, err := Merge(a, []Rule{{Name: "a"}}); !errors.Is(err, ErrInvalidRule) {
		t.Errorf("duplicate: err = %v", err)
	}
}

func TestQueues(t *testing.T) {
	t.Parallel()
	r := func(name, q string, n, vis int) Rule {
		return Rule{Name: name, Target: Target{Queue: q, MaxReceiveCount: n, VisibilityTimeoutSeconds: vis}}
	}
	qs, err := Queues([]Rule{r("z", "planner", 5, 60), r("y", "executor", 3, 30), r("x", "planner", 5, 60)})
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 2 || qs[0].Name != "executor" || qs[1].Name != "planner" {
		t.Fatalf("queues = %+v", qs)
	}
	if p := qs[1]; p.MaxReceiveCount != 5 || p.VisibilityTimeoutSeconds != 60 || strings.Join(p.Rules, ",") != "x,z" {
		t.Errorf("planner = %+v", p)
	}
	_, err = Queues([]Rule{r("a", "planner", 5, 60), r("b", "planner", 5, 61)})
	if !errors.Is(err, ErrQueueConflict) || !strings.Contains(err.Error(), `"a"`) || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("conflict: err = %v", err)
	}
	if qs, err := Queues(nil); err != nil || len(qs) != 0 {
		t.Errorf("no rules: %v, %v", qs, err)
	}
}
