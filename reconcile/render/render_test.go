package render

import (
	"errors"
	"strings"
	"testing"
)

func TestValuesKeepStringsAsStrings(t *testing.T) {
	v, err := CompileValues(map[string]any{
		"tag":    "{{ .PR.SHA }}",
		"branch": "{{ .PR.Branch }}",
		"list":   []any{"{{ .Namespace }}", 3},
		"n":      5,
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := v.Render(Data{Namespace: "pr-web-7", PR: PR{Number: 7, Branch: "a,b=c", SHA: "1234567"}})
	if err != nil {
		t.Fatal(err)
	}
	if out["tag"] != "1234567" || out["branch"] != "a,b=c" || out["n"] != 5 {
		t.Errorf("rendered = %#v", out)
	}
	if l := out["list"].([]any); l[0] != "pr-web-7" || l[1] != 3 {
		t.Errorf("list = %#v", l)
	}
	// Rendering returns a copy: the compiled tree is not changed.
	out["n"] = 6
	again, _ := v.Render(Data{})
	if again["n"] != 5 {
		t.Errorf("second render = %#v", again)
	}
}

func TestCompileRejectsUnknownFieldsWithThePath(t *testing.T) {
	_, err := CompileValues(map[string]any{"ingress": map[string]any{"host": "{{ .PR.Sha }}"}, "args": []any{"ok", "{{ .Nope }}"}})
	var pe *PathError
	if !errors.As(err, &pe) {
		t.Fatalf("want *PathError, got %v", err)
	}
	for _, want := range []string{".ingress.host", ".args[1]", Fields} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if _, err := Compile("{{ .Namespace"); err == nil {
		t.Error("unterminated template compiled")
	}
}

func TestLiteralsAndNil(t *testing.T) {
	tpl, err := Compile("static.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := tpl.Render(Data{}); got != "static.example.com" {
		t.Errorf("literal = %q", got)
	}
	var none *Template
	if got, err := none.Render(Data{}); got != "" || err != nil {
		t.Errorf("nil template = %q, %v", got, err)
	}
	host, _ := Compile("{{ .Namespace }}.preview.example.com")
	if got, _ := host.Render(Data{Namespace: "pr-web-1"}); got != "pr-web-1.preview.example.com" {
		t.Errorf("host = %q", got)
	}
}
