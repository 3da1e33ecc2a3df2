package kube

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestNamespaceName(t *testing.T) {
	long := strings.Repeat("a", 100)
	tests := []struct {
		repo   string
		number int
		want   string
	}{
		{"acme/web", 12, "pr-web-12"},
		{"acme/Web", 12, "pr-web-12"}, // case alone is not lossy (GitHub names are case-insensitive)
		{"web", 1, "pr-web-1"},
		{"acme/my-app", 7, "pr-my-app-7"},
		{"acme/my.app", 7, "pr-my-app-" + shortHash("acme/my.app") + "-7"},
		{"acme/my_app", 7, "pr-my-app-" + shortHash("acme/my_app") + "-7"},
		{"acme/--x--", 3, "pr-x-" + shortHash("acme/--x--") + "-3"},
		{"acme/...", 5, "pr-repo-" + shortHash("acme/...") + "-5"},
		{"acme/", 5, "pr-repo-" + shortHash("acme/") + "-5"},
		{"", 5, "pr-repo-" + shortHash("") + "-5"},
		{"acme/" + long, 123456, "pr-" + strings.Repeat("a", 63-3-9-7) + "-" + shortHash("acme/"+long) + "-123456"},
		{"acme/ünïcode", 9, "pr-n-code-" + shortHash("acme/ünïcode") + "-9"},
		{"acme/web", -4, "pr-web-4"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s#%d", tt.repo, tt.number), func(t *testing.T) {
			got := NamespaceName(tt.repo, tt.number)
			if got != tt.want {
				t.Errorf("NamespaceName(%q, %d) = %q, want %q", tt.repo, tt.number, got, tt.want)
			}
			checkNamespaceName(t, tt.repo, tt.number, got)
		})
	}
}

func TestNamespaceNameHashIsCaseInsensitive(t *testing.T) {
	if a, b := NamespaceName("Acme/My.App", 1), NamespaceName("acme/my.app", 1); a != b {
		t.Errorf("case variants differ: %q vs %q", a, b)
	}
}

func TestNamespaceNameTruncatedNamesDoNotCollide(t *testing.T) {
	seen := map[string]string{}
	prefix := strings.Repeat("very-long-repository-name-", 4)
	for i := range 5000 {
		repo := fmt.Sprintf("acme/%s%d", prefix, i)
		name := NamespaceName(repo, 42)
		checkNamespaceName(t, repo, 42, name)
		if len(name) != 63 {
			t.Fatalf("%q: expected a truncated 63-char name, got %d chars", name, len(name))
		}
		if other, dup := seen[name]; dup {
			t.Fatalf("%q and %q both map to %q", other, repo, name)
		}
		seen[name] = repo
	}
	// The same long name under two owners must not collide either.
	a, b := NamespaceName("acme/"+prefix, 1), NamespaceName("other/"+prefix, 1)
	if a == b {
		t.Errorf("long names of different owners collide: %q", a)
	}
}

func TestReleaseName(t *testing.T) {
	got := ReleaseName
	if got != "preview" || len(got) > 53 || len(validation.IsDNS1123Label(got)) > 0 {
		t.Errorf("ReleaseName = %q", got)
	}
}

func TestRepositoryLabel(t *testing.T) {
	long := "acme/" + strings.Repeat("x", 100)
	tests := map[string]string{
		"acme/web":     "acme.web",
		"Acme/My_App.": "acme.my_app",
		"acme/ü":       "acme",
		"-acme/-":      "acme",
	}
	for in, want := range tests {
		if got := RepositoryLabel(in); got != want {
			t.Errorf("RepositoryLabel(%q) = %q, want %q", in, got, want)
		}
	}
	got := RepositoryLabel(long)
	if len(got) > 63 || !strings.HasSuffix(got, "-"+shortHash(long)) {
		t.Errorf("RepositoryLabel(long) = %q", got)
	}
	for _, in := range []string{"acme/web", long, "a/b.c_d-e", "ü/ü", ""} {
		if errs := validation.IsValidLabelValue(RepositoryLabel(in)); len(errs) > 0 {
			t.Errorf("RepositoryLabel(%q) = %q is not a label value: %v", in, RepositoryLabel(in), errs)
		}
	}
}

func FuzzNamespaceName(f *testing.F) {
	f.Add("acme/web", 12, "other/web", 12)
	f.Add("acme/"+strings.Repeat("z", 80), 1, "acme/"+strings.Repeat("z", 81), 1)
	f.Add("A/B.C", 99999, "a/b-c", 99999)
	f.Add("", 0, "/", 0)
	f.Fuzz(func(t *testing.T, repoA string, numA int, repoB string, numB int) {
		a := NamespaceName(repoA, numA)
		checkNamespaceName(t, repoA, numA, a)
		b := NamespaceName(repoB, numB)
		checkNamespaceName(t, repoB, numB, b)
		// Distinct repositories whose names were both hashed (truncated or
		// lossy) must not collide for the same PR number.
		// The hash is of the lowercased name (not Unicode case folding).
		lowerA, lowerB := strings.ToLower(repoA), strings.ToLower(repoB)
		if numA == numB && lowerA != lowerB && hashed(repoA, a, numA) && hashed(repoB, b, numB) && a == b {
			t.Errorf("%q and %q collide: %q", repoA, repoB, a)
		}
		if l := RepositoryLabel(repoA); len(validation.IsValidLabelValue(l)) > 0 {
			t.Errorf("RepositoryLabel(%q) = %q is not a label value", repoA, l)
		}
	})
}

// hashed reports whether name carries repo's short hash before the number.
func hashed(repo, name string, number int) bool {
	return strings.HasSuffix(name, "-"+shortHash(repo)+"-"+formatNumber(number))
}

func checkNamespaceName(t *testing.T, repo string, number int, name string) {
	t.Helper()
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		t.Fatalf("NamespaceName(%q, %d) = %q: not a DNS-1123 label: %v", repo, number, name, errs)
	}
	if !strings.HasPrefix(name, "pr-") {
		t.Fatalf("NamespaceName(%q, %d) = %q: no pr- prefix", repo, number, name)
	}
	if want := "-" + formatNumber(number); !strings.HasSuffix(name, want) {
		t.Fatalf("NamespaceName(%q, %d) = %q: does not end with %q", repo, number, name, want)
	}
	if _, err := strconv.ParseUint(formatNumber(number), 10, 64); err != nil {
		t.Fatalf("formatNumber(%d) = %q", number, formatNumber(number))
	}
}

func TestNamespaceNameIgnoresLetterCase(t *testing.T) {
	for _, repo := range []string{"Acme/Web", "Acme/Web.Site", "Acme/" + strings.Repeat("Long-Name", 8)} {
		if a, b := NamespaceName(repo, 7), NamespaceName(strings.ToLower(repo), 7); a != b {
			t.Errorf("%s: %s, lower case: %s", repo, a, b)
		}
	}
}
