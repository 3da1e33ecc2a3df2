package redact

import (
	"strings"
	"testing"
)

const (
	ghToken  = "ghp_abcdefghijklmnopqrstuvwxyz0123"
	jwt      = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiI0MiJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
	pemBlock = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----"
)

func TestString(t *testing.T) {
	cases := []struct {
		name, in string
		bad      []string // must not survive
		want     string   // exact output, when not ""
	}{
		// The cases of reconcile's TestRedact.
		{name: "github token", in: "auth with " + ghToken + " failed", bad: []string{ghToken}, want: "auth with [REDACTED] failed"},
		{name: "url password", in: "DATABASE_URL=postgres://app:s3cr3tpw@db:5432/x", bad: []string{"s3cr3tpw"}, want: "DATABASE_URL=postgres://app:[REDACTED]@db:5432/x"},
		{name: "json password", in: `{"password": "hunter22"}`, bad: []string{"hunter22"}, want: `{"password": "[REDACTED]"}`},
		{name: "bearer header", in: "Authorization: Bearer abc.def.ghijklmnop", bad: []string{"abc.def.ghijklmnop", "Bearer"}, want: "Authorization: [REDACTED]"},
		{name: "aws key id", in: "key AKIAABCDEFGHIJKLMNOP here", bad: []string{"AKIAABCDEFGHIJKLMNOP"}, want: "key [REDACTED] here"},
		{name: "pem", in: "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----", bad: []string{"MIIB", "PRIVATE KEY"}, want: "[REDACTED]"},
		{name: "api key", in: "api_key=zzzzzzzz", bad: []string{"zzzzzzzz"}, want: "api_key=[REDACTED]"},

		// The cases github's own patterns covered.
		{name: "short github token with underscore", in: "token ghs_0123456789abcdef_X in the log", bad: []string{"ghs_0123456789abcdef_X"}},
		{name: "fine-grained token", in: "x github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz y", bad: []string{"github_pat_"}, want: "x [REDACTED] y"},
		{name: "token glued to text", in: "prefix" + ghToken + "suffix", bad: []string{ghToken}},
		{name: "authorization token scheme", in: `Authorization: token abc`, bad: []string{"abc"}, want: "Authorization: [REDACTED]"},
		{name: "authorization no scheme", in: `authorization="c2VjcmV0" next`, bad: []string{"c2VjcmV0"}, want: `authorization="[REDACTED]" next`},
		{name: "authorization in a header map", in: "map[Authorization:[Bearer abcdefgh1234]]", bad: []string{"abcdefgh1234", "Bearer"}},
		{name: "jwt", in: "jwt " + jwt + " end", bad: []string{"eyJ"}, want: "jwt [REDACTED] end"},
		{name: "unsigned jwt", in: "eyJhbGciOi.eyJpc3MiOi.", bad: []string{"eyJ"}, want: "[REDACTED]"},
		{name: "pem without end", in: "key: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nmore", bad: []string{"MIIEvQ", "more"}, want: "key: [REDACTED]"},
		{name: "pem between text", in: "a\n" + pemBlock + "\nb\n" + pemBlock + "\nc", bad: []string{"MIIBOgIBAAJBAKj34", "PRIVATE"}, want: "a\n[REDACTED]\nb\n[REDACTED]\nc"},

		// Keys, separators and users stay.
		{name: "password equals", in: "password=hunter2 rest", bad: []string{"hunter2"}, want: "password=[REDACTED] rest"},
		{name: "token colon", in: "token: abc123;next", bad: []string{"abc123"}, want: "token: [REDACTED];next"},
		{name: "query secret", in: "GET /cb?secret=s3&x=1", bad: []string{"s3"}, want: "GET /cb?secret=[REDACTED]&x=1"},
		{name: "quoted yaml", in: `access_key: 'k3y'`, bad: []string{"k3y"}, want: `access_key: '[REDACTED]'`},
		{name: "url user stays", in: "https://deploy:pw12@git.example.com/repo", bad: []string{"pw12"}, want: "https://deploy:[REDACTED]@git.example.com/repo"},
		{name: "unicode case folding", in: "\u017fecret=abc", bad: []string{"abc"}, want: "\u017fecret=[REDACTED]"},
		{name: "basic", in: "Basic dXNlcjpwYXNzd29yZA==", bad: []string{"dXNlcjpwYXNzd29yZA"}, want: "[REDACTED]"},

		// Harmless text is left alone.
		{name: "harmless", in: "GET /healthz 200 in 3ms", want: "GET /healthz 200 in 3ms"},
		{name: "url without password", in: "see https://github.com/acme/web/pull/7", want: "see https://github.com/acme/web/pull/7"},
		{name: "empty", in: "", want: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := String(tc.in)
			for _, bad := range tc.bad {
				if strings.Contains(out, bad) {
					t.Errorf("String(%q) = %q, still contains %q", tc.in, out, bad)
				}
			}
			if len(tc.bad) > 0 && !strings.Contains(out, mark) {
				t.Errorf("String(%q) = %q, no %s", tc.in, out, mark)
			}
			if tc.want != "" || tc.in == "" {
				if out != tc.want {
					t.Errorf("String(%q) = %q, want %q", tc.in, out, tc.want)
				}
			}
			if again := String(out); again != out {
				t.Errorf("not idempotent: String(%q) = %q", out, again)
			}
		})
	}
}

func TestNew(t *testing.T) {
	r := New("my-literal-token", "abc", "", "s3cr3t-password", "s3cr3t")
	for in, want := range map[string]string{
		"x my-literal-token y":          "x [REDACTED] y",
		"abc is too short to be hidden": "abc is too short to be hidden",
		"pw s3cr3t-password and s3cr3t": "pw [REDACTED] and [REDACTED]",
		"and patterns: " + ghToken:      "and patterns: [REDACTED]",
	} {
		if got := r(in); got != want {
			t.Errorf("New(...)(%q) = %q, want %q", in, got, want)
		}
	}
	if got := New()("password=x"); got != "password=[REDACTED]" {
		t.Errorf("New() = %q", got)
	}
}

// vocabulary is what FuzzString builds credential-like text from.
var vocabulary = []string{
	"password", "pwd", "secret", "api_key", "token", "Token", "Bearer", "basic", "authorization", "Authorization",
	"=", ":", " ", "\t", "\n", "\"", "'", "&", ";", ",", "-", "_", ".", "[", "]", "://", "@", "/",
	"x", "user", "12345678", "abcdefgh", "abcdefghijklmnopqrstu", "[REDACTED]",
	"AKIA", "ABCDEFGHIJKLMNOP", "eyJ", "eyJabcdef", "ghp_", "ghs_", "github_pat_",
	"-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----",
}

// FuzzString checks that String never panics, is idempotent, and never
// lets a GitHub token planted anywhere in the text through.
func FuzzString(f *testing.F) {
	for _, s := range []string{
		"", "GET /healthz 200 in 3ms", "password=hunter2", `{"password": "hunter22"}`,
		"Authorization: Bearer abc.def.ghijklmnop", "postgres://app:pw@db/x", "key AKIAABCDEFGHIJKLMNOP here",
		pemBlock, "-----BEGIN PRIVATE KEY-----\nabc", jwt, "authorization=token=abc", "token: token abcdefghij",
		"://password:pw@host", "map[Authorization:[Bearer abcdefgh1234]]", "ghs_ghs_ghs_ghs_ghs_ghs_",
	} {
		f.Add(s, uint(len(s)/2))
	}
	const planted = "ghp_Plant3dT0kenXXXXXXXXXXXXXXXXXXXXXXX"
	f.Fuzz(func(t *testing.T, s string, at uint) {
		// Random bytes rarely spell two credentials next to each other,
		// so the bytes of s also pick pieces of them.
		var pieces strings.Builder
		for i := 0; i < len(s) && i < 24; i++ {
			pieces.WriteString(vocabulary[int(s[i])%len(vocabulary)])
		}
		for _, in := range []string{s, pieces.String()} {
			out := String(in)
			if again := String(out); again != out {
				t.Fatalf("not idempotent:\nin:     %q\nonce:   %q\ntwice:  %q", in, out, again)
			}
			if want := withoutHints(in); out != want {
				t.Fatalf("the hints changed the result:\nin:    %q\ngot:   %q\nwant:  %q", in, out, want)
			}
		}
		i := int(at % uint(len(s)+1))
		in := s[:i] + planted + s[i:]
		out := String(in)
		if strings.Contains(out, planted) {
			t.Fatalf("planted token survived: String(%q) = %q", in, out)
		}
		// Nor any recognisable part of it.
		if body := "Plant3dT0ken"; strings.Contains(out, body) && !strings.Contains(s, body) {
			t.Fatalf("part of the planted token survived: String(%q) = %q", in, out)
		}
	})
}

// withoutHints is String with every rule tried on all text.
func withoutHints(s string) string {
	for range maxPasses {
		t := s
		for _, r := range rules {
			t = r.re.ReplaceAllString(t, r.repl)
		}
		if t == s {
			break
		}
		s = t
	}
	return s
}

// typicalLog is about 8 KB of pod log without credentials: request lines,
// image pulls, git SHAs, UUIDs and URLs.
func typicalLog() string {
	lines := []string{
		`2024-05-07T10:21:33.412Z INFO  http: GET /healthz 200 in 3ms remote=10.42.0.17:51234`,
		`2024-05-07T10:21:33.980Z INFO  reconcile: pr=128 sha=3f9c2a1e5b7d4c6a8e0f1b2d3c4e5f6a7b8c9d0e phase=deploy`,
		`2024-05-07T10:21:34.001Z DEBUG pulling image registry.example.com/acme/web:0123abcd`,
		`2024-05-07T10:21:34.118Z INFO  request_id=6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b method=POST path=/api/v1/orders status=201 bytes=512`,
		`2024-05-07T10:21:34.250Z WARN  slow query (212ms): SELECT id, name FROM users WHERE org_id = $1 LIMIT 50`,
		`2024-05-07T10:21:35.003Z INFO  fetched https://example.com/static/app.js?v=20240507 in 41ms`,
		`2024-05-07T10:21:35.441Z ERROR upstream: dial tcp 10.43.12.8:8080: connect: connection refused (retry 2/5)`,
		`    at Object.<anonymous> (/app/node_modules/express/lib/router/index.js:284:7)`,
		`2024-05-07T10:21:36.771Z INFO  cache hit ratio=0.93 entries=18211 evictions=12`,
	}
	var b strings.Builder
	for i := 0; b.Len() < 8<<10; i++ {
		b.WriteString(lines[i%len(lines)])
		b.WriteByte('\n')
	}
	return b.String()
}

func BenchmarkString(b *testing.B) {
	s := typicalLog()
	if out := String(s); out != s {
		b.Fatalf("typical log changed:\n%s", out)
	}
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		String(s)
	}
}
