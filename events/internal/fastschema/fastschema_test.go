package fastschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const base = "https://example.test/"

// defs is a second resource the test schemas $ref into.
const defs = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$id": "https://example.test/defs.json",
  "$defs": {
    "name": {"type": "string", "pattern": "^[a-z]{1,8}$"},
    "count": {"type": "integer", "minimum": 0},
    "tree": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/tree"}}}},
    "a~b/c": {"const": "escaped"}
  }
}`

func decode(t testing.TB, s string) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(s))
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return v
}

// compileBoth compiles schema (as resource base+"s.json", next to defs and
// extra) with this package and with the general validator.
func compileBoth(t testing.TB, schema string, extra map[string]string) (*Checker, *jsonschema.Schema, error) {
	t.Helper()
	docs := map[string]string{base + "defs.json": defs, base + "s.json": schema}
	for k, v := range extra {
		docs[base+k] = v
	}
	resources := map[string]any{}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	for url, s := range docs {
		d := decode(t, s)
		resources[url] = d
		if err := c.AddResource(url, d); err != nil {
			t.Fatalf("add %s: %v", url, err)
		}
	}
	general, err := c.Compile(base + "s.json")
	if err != nil {
		t.Fatalf("general validator rejects the schema: %v", err)
	}
	fast, err := Compile(resources, base+"s.json")
	return fast, general, err
}

func TestCheck(t *testing.T) {
	t.Parallel()
	type inst struct {
		doc  string
		want Verdict
	}
	tests := []struct {
		name   string
		schema string
		docs   []inst
	}{
		{"type", `{"type": "string"}`, []inst{{`"x"`, Valid}, {`1`, Invalid}, {`null`, Invalid}, {`{}`, Invalid}}},
		{"type list", `{"type": ["string", "null"]}`, []inst{{`"x"`, Valid}, {`null`, Valid}, {`true`, Invalid}, {`[]`, Invalid}}},
		{"integer", `{"type": "integer"}`, []inst{{`3`, Valid}, {`-3`, Valid}, {`1.5`, Unknown}, {`1.0`, Unknown}, {`1e2`, Unknown},
			{`123456789012345678901234567890`, Unknown}, {`"3"`, Invalid}}},
		{"number", `{"type": "number"}`, []inst{{`1.5`, Valid}, {`3`, Valid}, {`"1"`, Invalid}}},
		{"const string", `{"const": "1.0"}`, []inst{{`"1.0"`, Valid}, {`"1"`, Invalid}, {`1.0`, Invalid}, {`null`, Invalid}, {`["1.0"]`, Invalid}}},
		{"const bool", `{"const": true}`, []inst{{`true`, Valid}, {`false`, Invalid}, {`1`, Invalid}, {`"true"`, Invalid}}},
		{"enum", `{"enum": ["a", "b", null]}`, []inst{{`"a"`, Valid}, {`null`, Valid}, {`"c"`, Invalid}, {`{}`, Invalid}}},
		{"required", `{"required": ["a", "b"]}`, []inst{{`{"a":1,"b":null}`, Valid}, {`{"a":1}`, Invalid}, {`"not an object"`, Valid}}},
		{"properties", `{"properties": {"a": {"type": "string"}}}`, []inst{{`{"a":"x","b":1}`, Valid}, {`{"a":1}`, Invalid}, {`{}`, Valid}, {`[1]`, Valid}}},
		{"additionalProperties", `{"properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string"}}`,
			[]inst{{`{"a":1,"b":"x"}`, Valid}, {`{"a":1,"b":2}`, Invalid}, {`{"a":"x"}`, Invalid}, {`{"a":1.5}`, Unknown}}},
		{"additionalProperties alone", `{"additionalProperties": false}`, []inst{{`{}`, Valid}, {`{"a":1}`, Invalid}, {`3`, Valid}}},
		{"items", `{"items": {"type": "string"}, "minItems": 1, "maxItems": 2}`,
			[]inst{{`["a"]`, Valid}, {`[]`, Invalid}, {`["a","b","c"]`, Invalid}, {`["a",1]`, Invalid}, {`{"a":1}`, Valid}}},
		{"uniqueItems", `{"uniqueItems": true}`, []inst{{`["a","b",null,true]`, Valid}, {`["a","a"]`, Invalid}, {`[1,1]`, Unknown}, {`[{},{}]`, Unknown}}},
		{"uniqueItems false", `{"uniqueItems": false}`, []inst{{`["a","a"]`, Valid}}},
		{"lengths count runes", `{"minLength": 2, "maxLength": 3}`, []inst{{`"ab"`, Valid}, {`"日本語"`, Valid}, {`"a"`, Invalid}, {`"日本語x"`, Invalid}, {`7`, Valid}}},
		{"pattern", `{"pattern": "^[a-z]+$"}`, []inst{{`"abc"`, Valid}, {`"aBc"`, Invalid}, {`1`, Valid}}},
		{"pattern unanchored", `{"pattern": "b"}`, []inst{{`"abc"`, Valid}, {`"ac"`, Invalid}}},
		{"bounds", `{"minimum": 0, "maximum": 10, "exclusiveMaximum": 10}`,
			[]inst{{`0`, Valid}, {`9`, Valid}, {`10`, Invalid}, {`-1`, Invalid}, {`0.5`, Unknown}, {`"x"`, Valid}}},
		{"exclusiveMinimum", `{"exclusiveMinimum": 0}`, []inst{{`1`, Valid}, {`0`, Invalid}}},
		{"date-time", `{"format": "date-time"}`, []inst{
			{`"2026-11-26T04:00:00Z"`, Valid}, {`"2026-11-26t04:00:00.123456789+05:30"`, Valid}, {`"2026-11-26T23:59:59-00:00"`, Valid},
			{`"2026-11-26T23:59:60Z"`, Unknown}, {`"2026-02-30T04:00:00Z"`, Unknown}, {`"2026-11-26 04:00:00Z"`, Unknown},
			{`"2026-11-26T24:00:00Z"`, Unknown}, {`"2026-11-26T04:00:00"`, Unknown}, {`"2026-11-26T04:00:00.Z"`, Unknown},
			{`"yesterday"`, Unknown}, {`5`, Valid}}},
		{"ref into another resource", `{"properties": {"n": {"$ref": "defs.json#/$defs/name"}, "c": {"$ref": "defs.json#/$defs/count"}}}`,
			[]inst{{`{"n":"abc","c":3}`, Valid}, {`{"n":"ABC"}`, Invalid}, {`{"c":-1}`, Invalid}, {`{"c":1.5}`, Unknown}}},
		{"recursive ref", `{"$ref": "defs.json#/$defs/tree"}`, []inst{{`{"kids":[{"kids":[]},{}]}`, Valid}, {`{"kids":[{"kids":[1]}]}`, Invalid}}},
		{"escaped pointer", `{"$ref": "defs.json#/$defs/a~0b~1c"}`, []inst{{`"escaped"`, Valid}, {`"no"`, Invalid}}},
		{"local defs", `{"$defs": {"x": {"type": "boolean"}}, "items": {"$ref": "#/$defs/x"}}`, []inst{{`[true]`, Valid}, {`[1]`, Invalid}}},
		{"boolean schemas", `{"properties": {"yes": true, "no": false}}`, []inst{{`{"yes":1}`, Valid}, {`{"no":1}`, Invalid}}},
		{"allOf", `{"allOf": [{"type": "integer"}, {"minimum": 2}]}`, []inst{{`3`, Valid}, {`1`, Invalid}, {`"a"`, Invalid}, {`2.5`, Unknown}}},
		{"anyOf", `{"anyOf": [{"type": "string"}, {"type": "integer"}]}`, []inst{{`"a"`, Valid}, {`1`, Valid}, {`true`, Invalid}, {`1.5`, Unknown}}},
		{"oneOf", `{"oneOf": [{"type": "string"}, {"type": "integer"}]}`, []inst{{`"a"`, Valid}, {`1`, Valid}, {`true`, Invalid}, {`1.5`, Unknown}}},
		{"oneOf overlapping", `{"oneOf": [{"type": "string"}, {"pattern": "^a"}]}`, []inst{{`"b"`, Valid}, {`"a"`, Invalid}, {`1`, Valid}}},
		{"not", `{"not": {"required": ["x"]}}`, []inst{{`{}`, Valid}, {`{"x":1}`, Invalid}}},
		{"not of unknown", `{"not": {"type": "integer"}}`, []inst{{`1.5`, Unknown}, {`"a"`, Valid}, {`2`, Invalid}}},
		{"if then else", `{"if": {"properties": {"ok": {"const": true}}, "required": ["ok"]}, "then": {"required": ["result"]}, "else": {"required": ["reason"]}}`,
			[]inst{{`{"ok":true,"result":1}`, Valid}, {`{"ok":true}`, Invalid}, {`{"ok":false,"reason":"x"}`, Valid}, {`{"ok":false}`, Invalid}, {`{}`, Invalid}}},
		{"if of unknown, branches agree", `{"if": {"type": "integer"}, "then": {"minimum": 0}, "else": {"minimum": 0}}`, []inst{{`1.5`, Unknown}, {`"x"`, Valid}}},
		{"if of unknown, branches differ", `{"if": {"type": "integer"}, "then": true, "else": false}`, []inst{{`1.5`, Unknown}, {`1`, Valid}, {`"x"`, Invalid}}},
		{"then without if", `{"then": false}`, []inst{{`1`, Valid}}},
		{"annotations ignored", `{"title": "t", "description": "d", "$comment": "c", "default": 1, "examples": [1], "type": "integer"}`, []inst{{`1`, Valid}}},
		{"unknown keyword wins over nothing", `{"type": "integer", "minimum": 0, "const": "x"}`, []inst{{`1.5`, Invalid}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fast, general, err := compileBoth(t, tt.schema, nil)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			for _, in := range tt.docs {
				doc := decode(t, in.doc)
				if got := fast.Check(doc); got != in.want {
					t.Errorf("Check(%s) = %v, want %v", in.doc, got, in.want)
				}
				gerr := general.Validate(doc)
				if in.want == Valid && gerr != nil || in.want == Invalid && gerr == nil {
					t.Errorf("Check(%s) = %v but the general validator says %v", in.doc, in.want, gerr)
				}
			}
		})
	}
}

// TestUnsupported: a schema using anything outside the subset does not
// compile, so its documents always reach the general validator.
func TestUnsupported(t *testing.T) {
	t.Parallel()
	for _, schema := range []string{
		`{"patternProperties": {"^a": true}}`,
		`{"unevaluatedProperties": false}`,
		`{"prefixItems": [true]}`,
		`{"contains": {"type": "string"}}`,
		`{"dependentRequired": {"a": ["b"]}}`,
		`{"format": "email"}`,
		`{"const": 1}`,
		`{"enum": [{"a": 1}]}`,
		`{"minimum": 0.5}`,
		`{"$anchor": "x"}`,
		`{"$defs": {"a": {"$anchor": "x"}}, "$ref": "#x"}`,
		`{"properties": {"a": {"$id": "https://example.test/other.json"}}}`,
		`{"$id": "https://example.test/elsewhere.json"}`,
		`{"$schema": "http://json-schema.org/draft-07/schema#"}`,
		`{"items": {"unevaluatedItems": false}}`,
	} {
		if _, _, err := compileBoth(t, schema, nil); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Compile(%s) = %v, want ErrUnsupported", schema, err)
		}
	}
	// Through a pointer the resource's top level is not compiled, yet its
	// draft and base still hold for the target; a nested $id on the way
	// changes the base below it.
	for name, extra := range map[string]string{
		"other draft":     `{"$schema": "http://json-schema.org/draft-07/schema#", "$defs": {"a": {"type": "string"}}}`,
		"other base":      `{"$id": "https://example.test/renamed.json", "$defs": {"a": {"type": "string"}}}`,
		"nested resource": `{"$defs": {"n": {"$id": "https://example.test/n.json", "$defs": {"a": {"type": "string"}}}}}`,
	} {
		ref := "x.json#/$defs/a"
		if name == "nested resource" {
			ref = "x.json#/$defs/n/$defs/a"
		}
		resources := map[string]any{base + "x.json": decode(t, extra), base + "s.json": decode(t, `{"$ref": "`+ref+`"}`)}
		if _, err := Compile(resources, base+"s.json"); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: Compile = %v, want ErrUnsupported", name, err)
		}
	}
	// A $ref to a resource it was not given.
	if _, err := Compile(map[string]any{base + "s.json": decode(t, `{"$ref": "missing.json"}`)}, base+"s.json"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Compile with a missing resource = %v, want ErrUnsupported", err)
	}
}

// TestUndecodedTypes: a document holding a Go type the JSON decoder does
// not produce is left to the general validator.
func TestUndecodedTypes(t *testing.T) {
	t.Parallel()
	fast, _, err := compileBoth(t, `{"type": "object"}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range []any{3.5, map[string]any{"a": 1}, []any{int64(1)}, map[string]string{}} {
		if got := fast.Check(doc); got != Unknown {
			t.Errorf("Check(%#v) = %v, want unknown", doc, got)
		}
	}
}

// contractSchemas are the event contract's schemas (events/schemas), as
// resources under their $id base, and the URLs of the event types'.
func contractSchemas(t testing.TB) (map[string]any, []string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "schemas", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no contract schemas found: %v", err)
	}
	resources := map[string]any{}
	var types []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		url := "https://agentbus.dev/schemas/" + filepath.Base(f)
		resources[url] = decode(t, string(b))
		if filepath.Base(f) != "cloudevent.json" {
			types = append(types, url)
		}
	}
	return resources, types
}

// fuzzSchemas: the contract's schemas and a few that exercise the other
// keywords, compiled both ways.
func fuzzSchemas(t testing.TB) ([]*Checker, []*jsonschema.Schema) {
	resources, urls := contractSchemas(t)
	extra := map[string]string{
		base + "defs.json": defs,
		base + "a.json":    `{"type": "object", "properties": {"n": {"$ref": "defs.json#/$defs/name"}, "t": {"$ref": "defs.json#/$defs/tree"}, "l": {"type": "array", "items": {"type": "string"}, "uniqueItems": true, "maxItems": 3}}, "additionalProperties": {"type": ["integer", "boolean"], "minimum": 2, "exclusiveMaximum": 9}}`,
		base + "b.json":    `{"oneOf": [{"required": ["x"]}, {"required": ["y"]}], "anyOf": [{"not": {"type": "object"}}, {"minLength": 2}, {"properties": {"x": {"format": "date-time"}}}]}`,
		base + "c.json":    `{"if": {"properties": {"ok": {"const": true}}}, "then": {"required": ["r"]}, "else": {"properties": {"r": {"enum": ["a", null, false]}}}}`,
	}
	for url, s := range extra {
		resources[url] = decode(t, s)
		if url != base+"defs.json" {
			urls = append(urls, url)
		}
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	for url, d := range resources {
		if err := c.AddResource(url, d); err != nil {
			t.Fatal(err)
		}
	}
	var fast []*Checker
	var general []*jsonschema.Schema
	for _, url := range urls {
		f, err := Compile(resources, url)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		g, err := c.Compile(url)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		fast, general = append(fast, f), append(general, g)
	}
	return fast, general
}

// TestContractCompiles: every schema of the event contract is inside the
// subset. A new keyword there fails this test: extend this package (with
// cases above and in the fuzz target) or accept that events of that type
// always take the general validator.
func TestContractCompiles(t *testing.T) {
	t.Parallel()
	resources, urls := contractSchemas(t)
	for _, url := range urls {
		if _, err := Compile(resources, url); err != nil {
			t.Errorf("%s: %v", url, err)
		}
	}
}

// FuzzAgreesWithGeneralValidator: whenever Check decides, the general
// validator agrees, for any document and every test schema.
func FuzzAgreesWithGeneralValidator(f *testing.F) {
	fast, general := fuzzSchemas(f)
	for _, s := range []string{
		`{"specversion":"1.0","id":"1","source":"s","type":"agentbus.step.planned.v1","sessionid":"x","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","step":1,"data":{"step":1,"calls":[{"callId":"c","tool":"t","input":{}}]}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"agentbus.tool.invocation.requested.v1","time":"2026-11-26T04:00:00Z","step":"1","toolname":5,"data":{"step":1.5}}`,
		`{"n":"abc","t":{"kids":[{}]},"l":["a","a"],"z":3,"x":"2026-11-26T04:00:00Z"}`,
		`{"ok":true,"r":null,"y":1}`,
		`[1,"a",null]`,
		`"xy"`,
	} {
		f.Add(uint8(0), []byte(s))
	}
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var doc any
		if d.Decode(&doc) != nil {
			return
		}
		for i := range fast {
			// Every schema sees every document; which picks the one a
			// failure names first, so the fuzzer varies it too.
			k := (int(which) + i) % len(fast)
			v := fast[k].Check(doc)
			if v == Unknown {
				continue
			}
			gerr := general[k].Validate(doc)
			if (v == Valid) != (gerr == nil) {
				t.Fatalf("schema %d: Check = %v, general validator: %v, document %s", k, v, gerr, b)
			}
		}
	})
}
