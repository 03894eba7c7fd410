package deploy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Module is one Terraform module folder, parsed with hcl/v2 as Terraform
// reads it: every *.tf (native syntax) and *.tf.json (JSON syntax) file.
type Module struct {
	Dir       string
	Variables map[string]*Variable
	Locals    map[string]hcl.Expression
	Outputs   map[string]*hcl.Block
	Resources map[string]*hcl.Block // "type.name"
	Data      map[string]*hcl.Block // "type.name"
	Calls     map[string]*hcl.Block // module calls by name
	Providers []*hcl.Block
	// Native holds the native-syntax bodies of the .tf files for deep walks.
	Native map[string]*hclsyntax.Body
}

// Variable is a declared input variable.
type Variable struct {
	Block       *hcl.Block
	Description string
	HasType     bool
	Default     hcl.Expression // nil when the variable is required
}

var fileSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "terraform"},
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "output", LabelNames: []string{"name"}},
		{Type: "resource", LabelNames: []string{"type", "name"}},
		{Type: "data", LabelNames: []string{"type", "name"}},
		{Type: "module", LabelNames: []string{"name"}},
		{Type: "provider", LabelNames: []string{"name"}},
		{Type: "moved"},
		{Type: "import"},
		{Type: "check", LabelNames: []string{"name"}},
	},
}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "description"}, {Name: "type"}, {Name: "default"}, {Name: "sensitive"},
		{Name: "nullable"}, {Name: "ephemeral"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "validation"}},
}

// LoadModule parses the module in dir. Parse errors and duplicate
// declarations are returned as errors, as Terraform would report them.
func LoadModule(dir string) (*Module, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	m := &Module{
		Dir: dir, Variables: map[string]*Variable{}, Locals: map[string]hcl.Expression{},
		Outputs: map[string]*hcl.Block{}, Resources: map[string]*hcl.Block{}, Data: map[string]*hcl.Block{},
		Calls: map[string]*hcl.Block{}, Native: map[string]*hclsyntax.Body{},
	}
	p := hclparse.NewParser()
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, ".tf") || strings.HasSuffix(name, ".tf.json")) {
			continue
		}
		path := filepath.Join(dir, name)
		var f *hcl.File
		var diags hcl.Diagnostics
		if strings.HasSuffix(name, ".tf") {
			f, diags = p.ParseHCLFile(path)
		} else {
			f, diags = p.ParseJSONFile(path)
		}
		if diags.HasErrors() {
			errs = append(errs, fmt.Errorf("%s: %w", path, diags))
			continue
		}
		if b, ok := f.Body.(*hclsyntax.Body); ok {
			m.Native[path] = b
		}
		content, diags := f.Body.Content(fileSchema)
		if diags.HasErrors() {
			errs = append(errs, fmt.Errorf("%s: %w", path, diags))
			continue
		}
		errs = append(errs, m.add(content.Blocks)...)
	}
	return m, errors.Join(errs...)
}

func (m *Module) add(blocks hcl.Blocks) []error {
	var errs []error
	dup := func(b *hcl.Block, what string) {
		errs = append(errs, fmt.Errorf("%s: duplicate %s", b.DefRange, what))
	}
	for _, b := range blocks {
		switch b.Type {
		case "variable":
			name := b.Labels[0]
			if _, ok := m.Variables[name]; ok {
				dup(b, "variable "+name)
				continue
			}
			c, diags := b.Body.Content(variableSchema)
			if diags.HasErrors() {
				errs = append(errs, diags)
				continue
			}
			v := &Variable{Block: b}
			if a, ok := c.Attributes["description"]; ok {
				if val, d := a.Expr.Value(nil); !d.HasErrors() && val.Type().FriendlyName() == "string" {
					v.Description = val.AsString()
				}
			}
			_, v.HasType = c.Attributes["type"]
			if a, ok := c.Attributes["default"]; ok {
				v.Default = a.Expr
			}
			m.Variables[name] = v
		case "locals":
			attrs, diags := b.Body.JustAttributes()
			if diags.HasErrors() {
				errs = append(errs, diags)
				continue
			}
			for name, a := range attrs {
				if _, ok := m.Locals[name]; ok {
					errs = append(errs, fmt.Errorf("%s: duplicate local %s", a.NameRange, name))
					continue
				}
				m.Locals[name] = a.Expr
			}
		case "output":
			if _, ok := m.Outputs[b.Labels[0]]; ok {
				dup(b, "output "+b.Labels[0])
			}
			m.Outputs[b.Labels[0]] = b
		case "resource", "data":
			key := b.Labels[0] + "." + b.Labels[1]
			target := m.Resources
			if b.Type == "data" {
				target = m.Data
			}
			if _, ok := target[key]; ok {
				dup(b, b.Type+" "+key)
			}
			target[key] = b
		case "module":
			if _, ok := m.Calls[b.Labels[0]]; ok {
				dup(b, "module "+b.Labels[0])
			}
			m.Calls[b.Labels[0]] = b
		case "provider":
			m.Providers = append(m.Providers, b)
		}
	}
	return errs
}

// ModuleDirs returns every folder under root that holds a .tf file, except
// testdata folders.
func ModuleDirs(root string) ([]string, error) {
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".tf") {
			seen[filepath.Dir(path)] = true
		}
		return nil
	})
	var dirs []string
	for d := range seen {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	return dirs, err
}

// TFFiles returns every .tf file under root, except under testdata folders.
func TFFiles(root string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".tf") {
			files = append(files, path)
		}
		return nil
	})
	return files, err
}

// callSource returns the local source folder of a module call, or "" when
// the source is not a local path.
func (m *Module) callSource(call *hcl.Block) (string, error) {
	attrs, _ := call.Body.JustAttributes()
	a, ok := attrs["source"]
	if !ok {
		return "", fmt.Errorf("%s: module %s has no source", call.DefRange, call.Labels[0])
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() || v.Type().FriendlyName() != "string" {
		return "", fmt.Errorf("%s: module %s: source must be a literal string", a.Range, call.Labels[0])
	}
	src := v.AsString()
	if !strings.HasPrefix(src, "./") && !strings.HasPrefix(src, "../") {
		return "", nil
	}
	return filepath.Join(m.Dir, src), nil
}
