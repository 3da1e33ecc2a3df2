// Package render compiles the templates of a repository's configuration
// (the preview host and string values) once, at start, and renders them
// for one pull request. Unknown fields are errors at compile time.
package render

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"text/template"
)

// Data is what host and string values may refer to.
type Data struct {
	Namespace string
	Host      string
	PR        PR
}

// PR describes the pull request being deployed.
type PR struct {
	Number int
	Branch string
	SHA    string
	Title  string
}

// Fields lists what a template may use, for error messages.
const Fields = ".Namespace .Host .PR.Number .PR.Branch .PR.SHA .PR.Title"

var sample = Data{Namespace: "pr-web-1", Host: "pr-web-1.example.com",
	PR: PR{Number: 1, Branch: "main", SHA: strings.Repeat("a", 40), Title: "t"}}

// Template is a compiled string template; a string without "{{" renders
// as itself.
type Template struct {
	src string
	t   *template.Template
}

// Compile parses s and checks it against sample data, so that a template
// naming an unknown field fails here and not at the first deploy.
func Compile(s string) (*Template, error) {
	if !strings.Contains(s, "{{") {
		return &Template{src: s}, nil
	}
	t, err := template.New("v").Option("missingkey=error").Parse(s)
	if err != nil {
		return nil, fmt.Errorf("bad template %q: %w", s, err)
	}
	c := &Template{src: s, t: t}
	if _, err := c.Render(sample); err != nil {
		return nil, err
	}
	return c, nil
}

// String is the template's source.
func (t *Template) String() string { return t.src }

// Render executes the template.
func (t *Template) Render(d Data) (string, error) {
	if t == nil {
		return "", nil
	}
	if t.t == nil {
		return t.src, nil
	}
	var b bytes.Buffer
	if err := t.t.Execute(&b, d); err != nil {
		return "", fmt.Errorf("bad template %q (fields: %s): %w", t.src, Fields, err)
	}
	return b.String(), nil
}

// Values is a compiled tree of Helm values whose strings are templates.
type Values struct{ tree any }

// PathError names the value whose template does not compile.
type PathError struct {
	Path string // e.g. ".ingress.host" or ".args[1]"
	Err  error
}

func (e *PathError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *PathError) Unwrap() error { return e.Err }

// CompileValues compiles every string in v. Errors name the value's path
// below the values map (one error per bad value, joined).
func CompileValues(v map[string]any) (*Values, error) {
	var errs []error
	tree := compileAny(v, "", &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &Values{tree: tree}, nil
}

func compileAny(v any, path string, errs *[]error) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = compileAny(x, path+"."+k, errs)
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, x := range t {
			s[i] = compileAny(x, fmt.Sprintf("%s[%d]", path, i), errs)
		}
		return s
	case string:
		c, err := Compile(t)
		if err != nil {
			*errs = append(*errs, &PathError{Path: path, Err: err})
			return nil
		}
		return c
	default:
		return v
	}
}

// Render returns a fresh copy of the values with every template rendered.
func (v *Values) Render(d Data) (map[string]any, error) {
	if v == nil {
		return map[string]any{}, nil
	}
	out, err := renderAny(v.tree, d)
	if err != nil {
		return nil, err
	}
	m, _ := out.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

func renderAny(v any, d Data) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			r, err := renderAny(x, d)
			if err != nil {
				return nil, err
			}
			m[k] = r
		}
		return m, nil
	case []any:
		s := make([]any, len(t))
		for i, x := range t {
			r, err := renderAny(x, d)
			if err != nil {
				return nil, err
			}
			s[i] = r
		}
		return s, nil
	case *Template:
		return t.Render(d)
	default:
		return v, nil
	}
}
