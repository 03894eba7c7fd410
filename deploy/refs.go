package deploy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// refScope is what a reference may name at one place of a module: each.* only
// under for_each, count.* only under count, a dynamic block's iterator only
// inside its content.
type refScope struct {
	each, count bool
	iterators   map[string]bool
}

func (s refScope) with(iter string) refScope {
	n := refScope{each: s.each, count: s.count, iterators: map[string]bool{iter: true}}
	for k := range s.iterators {
		n.iterators[k] = true
	}
	return n
}

// metaArgs are module-call arguments that are not inputs of the module.
var metaArgs = map[string]bool{
	"source": true, "version": true, "for_each": true, "count": true, "depends_on": true, "providers": true,
}

// CheckModule checks what `terraform validate` would check in a module
// without provider schemas: every var./local./module./data./resource
// reference resolves, each./count. appear only where they exist, every
// argument of a module call is a declared variable of the called module and
// every required variable is given, module outputs referenced exist, and
// (our own style, stricter than validate) every variable has a type and a
// description and every output a description.
func CheckModule(dir string) []error {
	m, err := LoadModule(dir)
	if err != nil {
		return []error{err}
	}
	c := &refChecker{m: m, children: map[string]*Module{}}
	c.run()
	sort.Slice(c.errs, func(i, j int) bool { return c.errs[i].Error() < c.errs[j].Error() })
	return c.errs
}

type refChecker struct {
	m        *Module
	children map[string]*Module // module call name -> loaded child (local sources)
	errs     []error
}

func (c *refChecker) errorf(rng hcl.Range, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", rng, fmt.Sprintf(format, args...)))
}

func (c *refChecker) run() {
	m := c.m
	// Module calls: inputs against the child's variables.
	names := make([]string, 0, len(m.Calls))
	for n := range m.Calls {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		call := m.Calls[name]
		src, err := m.callSource(call)
		if err != nil {
			c.errs = append(c.errs, err)
			continue
		}
		if src == "" {
			continue // a registry module: its inputs are not ours to check
		}
		child, err := LoadModule(src)
		if err != nil {
			c.errs = append(c.errs, fmt.Errorf("module %s: %w", name, err))
			continue
		}
		c.children[name] = child
		attrs, _ := call.Body.JustAttributes()
		for arg, a := range attrs {
			if metaArgs[arg] {
				continue
			}
			if _, ok := child.Variables[arg]; !ok {
				c.errorf(a.NameRange, "module %s: unsupported argument %q: %s declares no variable %q", name, arg, src, arg)
			}
		}
		for vname, v := range child.Variables {
			if _, given := attrs[vname]; v.Default == nil && !given {
				c.errorf(call.DefRange, "module %s: missing required argument %q", name, vname)
			}
		}
	}
	for name, v := range m.Variables {
		if v.Description == "" {
			c.errorf(v.Block.DefRange, "variable %s has no description", name)
		}
		if !v.HasType {
			c.errorf(v.Block.DefRange, "variable %s has no type", name)
		}
	}
	for name, o := range m.Outputs {
		attrs, _ := o.Body.JustAttributes()
		if _, ok := attrs["description"]; !ok {
			c.errorf(o.DefRange, "output %s has no description", name)
		}
	}
	for _, expr := range m.Locals {
		c.expr(expr, refScope{})
	}
	c.providers()
	files := make([]string, 0, len(m.Native))
	for f := range m.Native {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		for _, b := range m.Native[f].Blocks {
			switch b.Type {
			case "terraform", "locals":
				// terraform: settings, no references; locals: checked above.
			case "variable":
				for name, a := range b.Body.Attributes {
					if name != "type" {
						c.expr(a.Expr, refScope{})
						continue
					}
					if _, _, d := typeexpr.TypeConstraintWithDefaults(a.Expr); d.HasErrors() {
						c.errorf(a.SrcRange, "variable %s: invalid type: %s", b.Labels[0], d.Error())
					}
				}
				// required_version >= 1.5: before 1.9 a validation may refer
				// only to its own variable.
				for _, inner := range b.Body.Blocks {
					c.body(inner.Body, refScope{}, false)
					for _, a := range inner.Body.Attributes {
						for _, t := range a.Expr.Variables() {
							if n, _ := attrAt(t, 1); t.RootName() == "var" && n != b.Labels[0] {
								c.errorf(t.SourceRange(), "variable %s: a validation may only refer to var.%s (Terraform < 1.9)", b.Labels[0], b.Labels[0])
							}
						}
					}
				}
			case "resource", "data", "module":
				_, each := b.Body.Attributes["for_each"]
				_, count := b.Body.Attributes["count"]
				c.body(b.Body, refScope{each: each, count: count}, b.Type == "module")
			default:
				c.body(b.Body, refScope{}, false)
			}
		}
	}
}

func (c *refChecker) body(b *hclsyntax.Body, s refScope, isCall bool) {
	for name, a := range b.Attributes {
		if isCall && name == "providers" {
			continue
		}
		c.expr(a.Expr, s)
	}
	for _, blk := range b.Blocks {
		switch blk.Type {
		case "lifecycle":
			for name, a := range blk.Body.Attributes {
				if name == "ignore_changes" {
					continue // bare attribute names, not references
				}
				c.expr(a.Expr, s)
			}
			for _, inner := range blk.Body.Blocks {
				c.body(inner.Body, s, false)
			}
		case "dynamic":
			iter := blk.Labels[0]
			if a, ok := blk.Body.Attributes["iterator"]; ok {
				if t, d := hcl.AbsTraversalForExpr(a.Expr); !d.HasErrors() {
					iter = t.RootName()
				}
			}
			for name, a := range blk.Body.Attributes {
				if name != "iterator" {
					c.expr(a.Expr, s)
				}
			}
			for _, inner := range blk.Body.Blocks {
				if inner.Type == "content" {
					c.body(inner.Body, s.with(iter), false)
				} else {
					c.errorf(inner.DefRange(), "dynamic %q: unexpected block %q", blk.Labels[0], inner.Type)
				}
			}
		default:
			c.body(blk.Body, s, false)
		}
	}
}

func (c *refChecker) expr(e hcl.Expression, s refScope) {
	for _, t := range e.Variables() {
		c.traversal(t, s)
	}
}

// attrAt returns the name of the i-th step of t when it is an attribute step.
func attrAt(t hcl.Traversal, i int) (string, bool) {
	if i >= len(t) {
		return "", false
	}
	switch st := t[i].(type) {
	case hcl.TraverseAttr:
		return st.Name, true
	case hcl.TraverseRoot:
		return st.Name, true
	}
	return "", false
}

func (c *refChecker) traversal(t hcl.Traversal, s refScope) {
	m := c.m
	root := t.RootName()
	rng := t.SourceRange()
	if s.iterators[root] {
		return
	}
	switch root {
	case "var":
		if n, ok := attrAt(t, 1); !ok || m.Variables[n] == nil {
			c.errorf(rng, "reference to undeclared input variable %q", n)
		}
	case "local":
		if n, ok := attrAt(t, 1); !ok || m.Locals[n] == nil {
			c.errorf(rng, "reference to undeclared local value %q", n)
		}
	case "module":
		n, ok := attrAt(t, 1)
		if !ok || m.Calls[n] == nil {
			c.errorf(rng, "reference to undeclared module %q", n)
			return
		}
		child := c.children[n]
		if child == nil {
			return
		}
		// module.NAME.OUTPUT or module.NAME[key].OUTPUT
		for i := 2; i < len(t); i++ {
			if out, ok := t[i].(hcl.TraverseAttr); ok {
				if child.Outputs[out.Name] == nil {
					c.errorf(rng, "module %s has no output %q", n, out.Name)
				}
				return
			}
		}
	case "data":
		typ, ok1 := attrAt(t, 1)
		name, ok2 := attrAt(t, 2)
		if !ok1 || !ok2 || m.Data[typ+"."+name] == nil {
			c.errorf(rng, "reference to undeclared data source data.%s.%s", typ, name)
		}
	case "path":
		if n, _ := attrAt(t, 1); n != "module" && n != "root" && n != "cwd" {
			c.errorf(rng, "unknown path attribute %q", n)
		}
	case "terraform":
		if n, _ := attrAt(t, 1); n != "workspace" && n != "applying" {
			c.errorf(rng, "unknown terraform attribute %q", n)
		}
	case "each":
		if !s.each {
			c.errorf(rng, "each. is only available where for_each is set")
		}
	case "count":
		if !s.count {
			c.errorf(rng, "count. is only available where count is set")
		}
	case "self":
		c.errorf(rng, "self is only available in provisioners")
	default:
		name, ok := attrAt(t, 1)
		if !ok || m.Resources[root+"."+name] == nil {
			c.errorf(rng, "reference to undeclared resource %s.%s", root, name)
		}
	}
}

// providers checks that every resource and data source type belongs to a
// provider the module declares in required_providers (a module that relies
// on an implicit provider gets whatever version the root happens to pick).
func (c *refChecker) providers() {
	declared := map[string]bool{}
	for _, body := range sortedBodies(c.m) {
		for _, b := range body.Blocks {
			if b.Type != "terraform" {
				continue
			}
			for _, rp := range b.Body.Blocks {
				if rp.Type == "required_providers" {
					for name := range rp.Body.Attributes {
						declared[name] = true
					}
				}
			}
		}
	}
	for _, body := range sortedBodies(c.m) {
		for _, b := range body.Blocks {
			if b.Type != "resource" && b.Type != "data" {
				continue
			}
			prov, _, _ := strings.Cut(b.Labels[0], "_")
			if a, ok := b.Body.Attributes["provider"]; ok {
				if t, d := hcl.AbsTraversalForExpr(a.Expr); !d.HasErrors() {
					prov = t.RootName()
				}
			}
			if !declared[prov] {
				c.errorf(b.DefRange(), "%s %s.%s: provider %q is not in required_providers", b.Type, b.Labels[0], b.Labels[1], prov)
			}
		}
	}
}
