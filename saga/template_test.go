package saga

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	t.Parallel()
	doc := Document(
		json.RawMessage(`{"from":"LIS","nights":3,"big":12345678901234567890,"nested":{"deep":{"v":true}},"list":[1,2]}`),
		map[string]json.RawMessage{
			"reserve_flight": json.RawMessage(`{"reservation":"FL-1","price":120.5}`),
			"empty":          json.RawMessage(`{}`),
			"scalar":         json.RawMessage(`"just a string"`),
		})
	cases := []struct {
		name, template, want string
		wantErr              string
	}{
		{"empty is {}", ``, `{}`, ""},
		{"literals", `{"a":1,"b":"x","c":null,"d":[1,"y"],"e":{"f":false},"g":"$notref","h":"$"}`, `{"a":1,"b":"x","c":null,"d":[1,"y"],"e":{"f":false},"g":"$notref","h":"$"}`, ""},
		{"input field", `{"from":"$.input.from","n":"$.input.nights"}`, `{"from":"LIS","n":3}`, ""},
		{"exact big number", `{"b":"$.input.big"}`, `{"b":12345678901234567890}`, ""},
		{"whole input", `{"all":"$.input.nested"}`, `{"all":{"deep":{"v":true}}}`, ""},
		{"nested template", `{"x":{"y":{"z":"$.input.nested.deep.v"}}}`, `{"x":{"y":{"z":true}}}`, ""},
		{"array value", `{"l":"$.input.list"}`, `{"l":[1,2]}`, ""},
		{"step output", `{"r":"$.steps.reserve_flight.reservation","p":"$.steps.reserve_flight.price"}`, `{"p":120.5,"r":"FL-1"}`, ""},
		{"whole steps", `"$.steps"`, `{"empty":{},"reserve_flight":{"price":120.5,"reservation":"FL-1"},"scalar":"just a string"}`, ""},
		{"no html escaping", `{"s":"<a&b>"}`, `{"s":"<a&b>"}`, ""},
		{"missing field", `{"x":"$.input.to"}`, "", `$.input.to: no field "to"`},
		{"missing step", `{"x":"$.steps.reserve_hotel.reservation"}`, "", `$.steps.reserve_hotel.reservation: no field "reserve_hotel"`},
		{"missing in empty output", `{"x":"$.steps.empty.id"}`, "", `$.steps.empty.id: no field "id"`},
		{"through a scalar", `{"x":"$.steps.scalar.id"}`, "", `$.steps.scalar.id: $.steps.scalar is not an object`},
		{"through an array", `{"x":"$.input.list.0"}`, "", `$.input.list.0: $.input.list is not an object`},
		{"unknown root", `{"x":"$.failure"}`, "", `$.failure: no field "failure"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := Resolve(json.RawMessage(c.template), doc)
			if c.wantErr != "" {
				if err == nil || !errors.Is(err, ErrPath) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want ErrPath with %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Errorf("got %s, want %s", got, c.want)
			}
		})
	}
}

func TestResolveBadTemplate(t *testing.T) {
	t.Parallel()
	doc := Document(json.RawMessage(`{"y":1}`), nil)
	for _, tmpl := range []string{`{`, `{"a":1}x`, `{"x":["$.input.y"]}`} {
		if _, err := Resolve(json.RawMessage(tmpl), doc); err == nil {
			t.Errorf("Resolve(%s) succeeded", tmpl)
		}
	}
}

func TestDocument(t *testing.T) {
	t.Parallel()
	doc := Document(nil, nil)
	b, _ := json.Marshal(doc)
	if string(b) != `{"input":{},"steps":{}}` {
		t.Errorf("empty document = %s", b)
	}
	doc = Document(json.RawMessage(`{"a":1}`), map[string]json.RawMessage{"s": json.RawMessage(`{"o":2}`)})
	b, _ = json.Marshal(doc)
	if string(b) != `{"input":{"a":1},"steps":{"s":{"o":2}}}` {
		t.Errorf("document = %s", b)
	}
}

// FuzzResolve: any template against any document either resolves to JSON
// or fails — it never panics — and a template without references resolves
// to itself (as JSON).
func FuzzResolve(f *testing.F) {
	f.Add([]byte(`{"a":"$.input.x","b":{"c":"$.steps.s.id"},"l":[1,"x"]}`), []byte(`{"x":1}`), []byte(`{"id":"r"}`))
	f.Add([]byte(`"$.steps"`), []byte(`{}`), []byte(`null`))
	f.Add([]byte(`{"x":["$.input"]}`), []byte(`[]`), []byte(`"s"`))
	f.Add([]byte(`{"n":1.5e3,"s":"$notref"}`), []byte(``), []byte(`{}`))
	f.Fuzz(func(t *testing.T, tmpl, input, output []byte) {
		doc := Document(input, map[string]json.RawMessage{"s": output})
		got, err := Resolve(tmpl, doc)
		if err != nil {
			return
		}
		if !json.Valid(got) {
			t.Fatalf("Resolve(%q) = %q, not JSON", tmpl, got)
		}
		// Without any "$" (also not escaped) the template has no reference.
		if !strings.Contains(string(tmpl), "$") && !strings.Contains(string(tmpl), `\u`) && json.Valid(tmpl) && len(strings.TrimSpace(string(tmpl))) > 0 {
			var a, b any
			if json.Unmarshal(tmpl, &a) == nil && json.Unmarshal(got, &b) == nil {
				ja, _ := json.Marshal(a)
				jb, _ := json.Marshal(b)
				if string(ja) != string(jb) {
					t.Fatalf("literal template %s resolved to %s", tmpl, got)
				}
			}
		}
	})
}
