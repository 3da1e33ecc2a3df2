package redact

import (
	"strings"
	"testing"
	"unicode/utf8"
)

const (
	ghToken  = "ghp_abcdefghijklmnopqrstuvwxyz0123"
	jwt      = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiI0MiJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
	pemBlock = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----"

	// Lines of a PEM body, the last one short as at the end of a key.
	keyLine1 = "RIgP/58waM+Dx3A5idNoDCDBwb2Dc4/dsdc6lC1MXlPq2Ymk/yE9fz1WuvL4NUyv"
	keyLine2 = "+D8FnyVVdBZdzst6iAxQa2H9uZ0+t1sAq6DdWXLgEJKC5BjfiOXslIVUgVil6p/8"
	keyLine3 = "ODnxr1YhNga3CcCy=="
	keyBody  = keyLine1 + "\n" + keyLine2 + "\n" + keyLine3 + "\n"
)

// A case is an input and the exact output of String; bad lists what must
// not survive (and then the output must hold a mark). keep means the
// output is the input.
type testCase struct {
	name, in, want string
	bad            []string
	keep           bool
}

var cases = []testCase{
	// The cases of reconcile's TestRedact.
	{name: "github token", in: "auth with " + ghToken + " failed", bad: []string{ghToken}, want: "auth with [REDACTED] failed"},
	{name: "url password", in: "DATABASE_URL=postgres://app:s3cr3tpw@db:5432/x", bad: []string{"s3cr3tpw"}, want: "DATABASE_URL=postgres://app:[REDACTED]@db:5432/x"},
	{name: "json password", in: `{"password": "hunter22"}`, bad: []string{"hunter22"}, want: `{"password": "[REDACTED]"}`},
	{name: "bearer header", in: "Authorization: Bearer abc.def.ghijklmnop", bad: []string{"abc.def.ghijklmnop", "Bearer"}, want: "Authorization: [REDACTED]"},
	{name: "aws key id", in: "key AKIAABCDEFGHIJKLMNOP here", bad: []string{"AKIAABCDEFGHIJKLMNOP"}, want: "key [REDACTED] here"},
	{name: "pem", in: "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----", bad: []string{"MIIB", "PRIVATE KEY"}, want: "[REDACTED]"},
	{name: "api key", in: "api_key=zzzzzzzz", bad: []string{"zzzzzzzz"}, want: "api_key=[REDACTED]"},

	// GitHub tokens, every prefix.
	{name: "github ghp", in: "x ghp_0123456789abcdefABCDEF0123456789abcd y", bad: []string{"ghp_"}, want: "x [REDACTED] y"},
	{name: "github gho", in: "x gho_0123456789abcdefABCDEF0123456789abcd y", bad: []string{"gho_"}, want: "x [REDACTED] y"},
	{name: "github ghu", in: "x ghu_0123456789abcdefABCDEF0123456789abcd y", bad: []string{"ghu_"}, want: "x [REDACTED] y"},
	{name: "github ghs", in: "x ghs_0123456789abcdefABCDEF0123456789abcd y", bad: []string{"ghs_"}, want: "x [REDACTED] y"},
	{name: "github ghr", in: "x ghr_0123456789abcdefABCDEF0123456789abcd y", bad: []string{"ghr_"}, want: "x [REDACTED] y"},
	{name: "short github token with underscore", in: "token ghs_0123456789abcdef_X in the log", bad: []string{"ghs_0123456789abcdef_X"}, want: "token [REDACTED] in the log"},
	{name: "fine-grained token", in: "x github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz y", bad: []string{"github_pat_"}, want: "x [REDACTED] y"},
	{name: "token glued to text", in: "prefix" + ghToken + "suffix", bad: []string{ghToken}, want: "prefix[REDACTED]"},

	// Other token formats.
	{name: "aws temporary key id", in: "AccessKeyId: ASIAY34FZKBOKMUTVV7A,", bad: []string{"ASIAY34FZKBOKMUTVV7A"}, want: "AccessKeyId: [REDACTED],"},
	{name: "aws key id glued", in: `"AKIAIOSFODNN7EXAMPLE"`, bad: []string{"AKIAIOSFODNN7EXAMPLE"}, want: `"[REDACTED]"`},
	{name: "slack bot", in: "SLACK_TOKEN xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx ok", bad: []string{"xoxb-"}, want: "SLACK_TOKEN [REDACTED] ok"},
	{name: "slack user", in: "xoxp-123456789012-123456789012-1234567890123-0123456789abcdef0123456789abcdef", bad: []string{"xoxp-"}, want: "[REDACTED]"},
	{name: "slack workspace", in: "t=xoxa-2-123456789012-abcdef", bad: []string{"xoxa-"}, want: "t=[REDACTED]"},
	{name: "slack refresh", in: "(xoxr-123456789012-abcdefghij)", bad: []string{"xoxr-"}, want: "([REDACTED])"},
	{name: "slack legacy", in: "xoxs-123456789012-abcdefghij", bad: []string{"xoxs-"}, want: "[REDACTED]"},
	{name: "slack app", in: "app token xapp-1-A0123456789-1234567890123-abcdef0123456789 set", bad: []string{"xapp-"}, want: "app token [REDACTED] set"},
	{name: "stripe live secret", in: "stripe: sk_live_4eC39HqLyjWDarjtT1zdp7dc", bad: []string{"sk_live_"}, want: "stripe: [REDACTED]"},
	{name: "stripe restricted", in: "rk_live_51H8abcdefghijklmnop", bad: []string{"rk_live_"}, want: "[REDACTED]"},
	{name: "stripe test secret", in: "key sk_test_4eC39HqLyjWDarjtT1zdp7dc.", bad: []string{"sk_test_"}, want: "key [REDACTED]."},
	{name: "stripe webhook secret", in: "whsec_0123456789abcdefABCDEF0123456789", bad: []string{"whsec_"}, want: "[REDACTED]"},
	{name: "google api key", in: "maps AIzaSyA-1234567890abcdefghijklmnopqrstu ok", bad: []string{"AIza"}, want: "maps [REDACTED] ok"},
	{name: "gitlab pat", in: "remote: glpat-abcdefghij0123456789 denied", bad: []string{"glpat-"}, want: "remote: [REDACTED] denied"},
	{name: "gitlab pat with routing", in: "glpat-abcdefghij0123456789ABCDEFG.01.0a1b2c3d4.", bad: []string{"glpat-", "0a1b2c3d4"}, want: "[REDACTED]."},
	{name: "gitlab deploy token", in: "gldt-abcdefghij0123456789", bad: []string{"gldt-"}, want: "[REDACTED]"},
	{name: "npm token", in: "//registry.npmjs.org/:_authToken=npm_KHcKrPKv2Gb69Yzi60SjQteUGNpUCBAy7Sum", bad: []string{"npm_"}, want: "//registry.npmjs.org/:_authToken=[REDACTED]"},
	{name: "npm token alone", in: "npm_KHcKrPKv2Gb69Yzi60SjQteUGNpUCBAy7Sum\n", bad: []string{"npm_"}, want: "[REDACTED]\n"},

	// JWTs and HTTP authorization.
	{name: "jwt", in: "jwt " + jwt + " end", bad: []string{"eyJ"}, want: "jwt [REDACTED] end"},
	{name: "unsigned jwt", in: "eyJhbGciOi.eyJpc3MiOi.", bad: []string{"eyJ"}, want: "[REDACTED]"},
	{name: "authorization token scheme", in: `Authorization: token abc`, bad: []string{"abc"}, want: "Authorization: [REDACTED]"},
	{name: "authorization no scheme", in: `authorization="c2VjcmV0" next`, bad: []string{"c2VjcmV0"}, want: `authorization="[REDACTED]" next`},
	{name: "authorization in a header map", in: "map[Authorization:[Bearer abcdefgh1234]]", bad: []string{"abcdefgh1234", "Bearer"}, want: "map[Authorization:[REDACTED]"},
	{name: "authorization basic", in: "Authorization: Basic dXNlcjpwYXNz", bad: []string{"dXNlcjpwYXNz", "Basic"}, want: "Authorization: [REDACTED]"},
	{name: "authorization short basic", in: "Authorization: Basic eDp5", bad: []string{"eDp5"}, want: "Authorization: [REDACTED]"},
	{name: "proxy authorization basic", in: "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n", bad: []string{"dXNlcjpwYXNz"}, want: "Proxy-Authorization: [REDACTED]\r\n"},
	{name: "proxy authorization bearer", in: "proxy-authorization: Bearer abcdefghij", bad: []string{"abcdefghij"}, want: "proxy-authorization: [REDACTED]"},
	{name: "proxy authorization in a header map", in: "map[Proxy-Authorization:[Basic dXNlcjpwYXNz]]", bad: []string{"dXNlcjpwYXNz"}, want: "map[Proxy-Authorization:[REDACTED]"},
	{name: "curl header", in: `curl -H "Authorization: Bearer 0123abcd" https://api`, bad: []string{"0123abcd"}, want: `curl -H "Authorization: [REDACTED]" https://api`},
	{name: "basic", in: "Basic dXNlcjpwYXNzd29yZA==", bad: []string{"dXNlcjpwYXNzd29yZA"}, want: "[REDACTED]"},
	{name: "bearer alone", in: "sent bearer 9f8e7d6c5b4a", bad: []string{"9f8e7d6c5b4a"}, want: "sent [REDACTED]"},
	{name: "token with scheme", in: "token: token abcdefghij", bad: []string{"abcdefghij"}, want: "token: [REDACTED]"},

	// PEM private keys.
	{name: "pem without end", in: "key: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nmore", bad: []string{"MIIEvQ", "more"}, want: "key: [REDACTED]"},
	{name: "pem between text", in: "a\n" + pemBlock + "\nb\n" + pemBlock + "\nc", bad: []string{"MIIBOgIBAAJBAKj34", "PRIVATE"}, want: "a\n[REDACTED]\nb\n[REDACTED]\nc"},
	{name: "pgp key block", in: "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF0\n=Xy1\n-----END PGP PRIVATE KEY BLOCK-----\nok", bad: []string{"lQOYBF0", "PRIVATE"}, want: "[REDACTED]\nok"},
	{name: "pem begin sharing dashes", in: "-----END A PRIVATE KEY-----BEGIN OPENSSH PRIVATE KEY-----\n" + keyLine1, bad: []string{keyLine1}, want: "-----END A PRIVATE KEY[REDACTED]"},
	{name: "pem end without begin", in: "…\n" + keyBody + "-----END RSA PRIVATE KEY-----\n2024-05-07 server started", bad: []string{keyLine1, keyLine2, keyLine3, "PRIVATE"}, want: "…\n[REDACTED]\n2024-05-07 server started"},
	{name: "pem end without begin at the start", in: keyLine2 + "\n" + keyLine3 + "\n-----END PRIVATE KEY-----", bad: []string{keyLine2, keyLine3}, want: "[REDACTED]"},
	{name: "pem end without begin after a text line", in: "loading key from env\n" + keyBody + "-----END EC PRIVATE KEY-----", bad: []string{keyLine1, keyLine3}, want: "loading key from env\n[REDACTED]"},
	{name: "pem end without begin crlf", in: "boot ok\r\n" + keyLine1 + "\r\n" + keyLine3 + "\r\n-----END PRIVATE KEY-----\r\nnext", bad: []string{keyLine1, keyLine3}, want: "boot ok\r\n[REDACTED]\r\nnext"},
	{name: "pem end without begin indented", in: "tls:\n  key: |\n    " + keyLine1 + "\n    " + keyLine3 + "\n    -----END OPENSSH PRIVATE KEY-----\n  cert: x", bad: []string{keyLine1, keyLine3}, want: "tls:\n  key: |\n[REDACTED]\n  cert: x"},
	{name: "pem end without begin json", in: "…\n" + `CDBwb2Dc4\/dsdc6lC1MX\n` + keyLine3 + `\n-----END PRIVATE KEY-----\n"}`, bad: []string{"CDBwb2Dc4", keyLine3}, want: "…\n[REDACTED]" + `\n"}`},
	{name: "pem end without begin json line", in: `{"key":"x\n` + keyLine1 + `\n-----END PRIVATE KEY-----\n"}`, bad: []string{keyLine1}, want: `{"key":"x\n[REDACTED]\n"}`},
	{name: "pem end marker alone", in: "x -----END EC PRIVATE KEY----- y", bad: []string{"PRIVATE"}, want: "x [REDACTED] y"},
	{name: "pem end after a blank line", in: keyLine1 + "\n\n" + keyLine3 + "\n-----END PRIVATE KEY-----", bad: []string{keyLine3}, want: keyLine1 + "\n\n[REDACTED]"},

	// URL passwords.
	{name: "url user stays", in: "https://deploy:pw12@git.example.com/repo", bad: []string{"pw12"}, want: "https://deploy:[REDACTED]@git.example.com/repo"},
	{name: "url empty user", in: "REDIS_URL=redis://:pw@host", bad: []string{"pw"}, want: "REDIS_URL=redis://:[REDACTED]@host"},
	{name: "url password with slash", in: "postgres://app:pa/ss@db/x", bad: []string{"pa/ss"}, want: "postgres://app:[REDACTED]@db/x"},
	{name: "url password with at", in: "redis://:p@ss@cache:6379/0", bad: []string{"p@ss"}, want: "redis://:[REDACTED]@cache:6379/0"},
	{name: "url password with slash and at", in: "mongodb://app:a/b@c@mongo.svc:27017/db?authSource=admin", bad: []string{"a/b@c"}, want: "mongodb://app:[REDACTED]@mongo.svc:27017/db?authSource=admin"},
	{name: "url password with colon", in: "amqp://guest:gu:est@rabbit", bad: []string{"gu:est"}, want: "amqp://guest:[REDACTED]@rabbit"},
	{name: "url password with quote", in: `postgres://app:pa"ss@db`, bad: []string{`pa"ss`}, want: "postgres://app:[REDACTED]@db"},
	{name: "url user with at", in: "https://me@corp.example:tok3n@git.example.com/x", bad: []string{"tok3n"}, want: "https://me@corp.example:[REDACTED]@git.example.com/x"},
	{name: "url ipv6 host", in: "redis://:pw/1@[::1]:6379", bad: []string{"pw/1"}, want: "redis://:[REDACTED]@[::1]:6379"},
	{name: "url then colon", in: "dial redis://:p/w@cache:6379: connection refused", bad: []string{"p/w"}, want: "dial redis://:[REDACTED]@cache:6379: connection refused"},
	{name: "url in json", in: `{"url":"redis://:p/w@cache","other":"a@b"}`, bad: []string{"p/w"}, want: `{"url":"redis://:[REDACTED]@cache","other":"a@b"}`},
	{name: "url in escaped json", in: `{"msg":"bad \"redis://:p/w@cache\""}`, bad: []string{"p/w"}, want: `{"msg":"bad \"redis://:[REDACTED]@cache\""}`},
	{name: "url user is a key", in: "git clone https://x-access-token:ghs_0123456789abcdefABCDEF0123456789abcd@github.com/acme/web.git failed", bad: []string{"ghs_"}, want: "git clone https://x-access-token:[REDACTED]@github.com/acme/web.git failed"},
	{name: "url user is a key, no host", in: "https://token:s3cr3t:x", bad: []string{"s3cr3t"}, want: "https://token:[REDACTED]"},
	{name: "two urls", in: "postgres://a:x/y@db1/a postgres://b:z@w@db2/b", bad: []string{"x/y", "z@w"}, want: "postgres://a:[REDACTED]@db1/a postgres://b:[REDACTED]@db2/b"},
	// Ambiguous: ":8080/github.com/acme/lib/" could be a password. The
	// last "@" followed by a host decides; over-redacting is the safe side.
	{name: "url port then at in path", in: "GET http://athens:3000/github.com/acme/lib/@v/list", want: "GET http://athens:[REDACTED]@v/list"},

	// Keys, separators and users stay.
	{name: "password equals", in: "password=hunter2 rest", bad: []string{"hunter2"}, want: "password=[REDACTED] rest"},
	{name: "token colon", in: "token: abc123;next", bad: []string{"abc123"}, want: "token: [REDACTED];next"},
	{name: "query secret", in: "GET /cb?secret=s3&x=1", bad: []string{"s3"}, want: "GET /cb?secret=[REDACTED]&x=1"},
	{name: "quoted yaml", in: `access_key: 'k3y'`, bad: []string{"k3y"}, want: `access_key: '[REDACTED]'`},
	{name: "unicode case folding", in: "\u017fecret=abc", bad: []string{"abc"}, want: "\u017fecret=[REDACTED]"},
	{name: "already redacted", in: "password=[REDACTED] redis://:[REDACTED]@host [REDACTED]", keep: true},

	// Harmless text is left alone.
	{name: "empty", in: "", keep: true},
	{name: "harmless", in: "GET /healthz 200 in 3ms", keep: true},
	{name: "log line", in: "2024-05-07T10:21:33.412Z INFO  reconcile: pr=128 phase=deploy elapsed=3.2s", keep: true},
	{name: "token words", in: "token validation failed for request 42", keep: true},
	{name: "basic words", in: "server requires basic authentication", keep: true},
	{name: "bearer words", in: "Bearer authentication required; refreshing token cache", keep: true},
	{name: "postgres auth error", in: `FATAL: password authentication failed for user "app"`, keep: true},
	{name: "kubernetes secret event", in: `MountVolume.SetUp failed for volume "creds" : secret "db-creds" not found`, keep: true},
	{name: "cache key", in: "cache key=users:42 miss", keep: true},
	{name: "git sha", in: "deployed 056a4ad683cbf721245568a8baa397f43a1d2c44 to pr-web-7", keep: true},
	{name: "git sha upper", in: "HEAD 056A4AD683CBF721245568A8BAA397F43A1D2C44", keep: true},
	{name: "uuid", in: "request_id=6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b", keep: true},
	{name: "image", in: "pulling registry.example.com/acme/web:0123abcd", keep: true},
	{name: "image with port", in: "pulling registry.example.com:5000/acme/web:0123abcd", keep: true},
	{name: "image digest", in: "ghcr.io/acme/web@sha256:056a4ad683cbf721245568a8baa397f43a1d2c44a3c2728b93e8319002d3167d", keep: true},
	{name: "docker url digest", in: "docker://registry.example.com:5000/acme/web@sha256:056a4ad683cbf721245568a8baa397f43a1d2c44a3c2728b93e8319002d3167d", keep: true},
	{name: "url without password", in: "see https://github.com/acme/web/pull/7", keep: true},
	{name: "url with at in path", in: "https://example.com/path@v1", keep: true},
	{name: "url with at after slash", in: "see https://evil.example/@admin", keep: true},
	{name: "url with colon in path", in: "https://example.com/a:b@c", keep: true},
	{name: "go proxy url", in: "https://proxy.golang.org/github.com/acme/lib/@v/v1.2.3.info", keep: true},
	{name: "pip vcs url", in: "git+https://github.com/acme/web.git@v1.2.3", keep: true},
	{name: "url user without password", in: "postgres://u@h:5/db ssh://git@github.com:22/acme/web.git", keep: true},
	{name: "url empty password", in: "redis://:@cache:6379", keep: true},
	{name: "url with port", in: "http://localhost:8080/healthz", keep: true},
	{name: "email", in: "mail user@example.com", keep: true},
	{name: "time zone", in: "TZ=Asia/Tokyo region asia-east1", keep: true},
	{name: "stripe publishable key", in: "pk_live_51H8abcdefghijklmnop", keep: true},
	{name: "certificate", in: "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----", keep: true},
	{name: "public key", in: "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----", keep: true},
	{name: "short prefixes", in: "ghp_short AKIA1234 xoxb-1 npm_install sk_live_x glpat-x", keep: true},
}

func TestString(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want
			if tc.keep {
				want = tc.in
			}
			out := String(tc.in)
			if out != want {
				t.Errorf("String(%q)\n = %q\nwant %q", tc.in, out, want)
			}
			for _, bad := range tc.bad {
				if strings.Contains(out, bad) {
					t.Errorf("String(%q) = %q, still contains %q", tc.in, out, bad)
				}
			}
			if len(tc.bad) > 0 && !strings.Contains(out, mark) {
				t.Errorf("String(%q) = %q, no %s", tc.in, out, mark)
			}
			if again := String(out); again != out {
				t.Errorf("not idempotent: String(%q) = %q", out, again)
			}
			if hinted := withoutHints(tc.in); hinted != out {
				t.Errorf("the hints changed the result: %q, without them %q", out, hinted)
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
	"=", ":", " ", "\t", "\n", "\r\n", `\n`, `\/`, "\"", "'", "&", ";", ",", "-", "_", ".", "[", "]", "://", "@", "/", "?", "#",
	"x", "user", "12345678", "abcdefgh", "abcdefghijklmnopqrstu", "[REDACTED]", "ABCD+/==", "dXNlcjpwYXNz", "6379",
	"AKIA", "ASIA", "ABCDEFGHIJKLMNOP", "eyJ", "eyJabcdef", "ghp_", "ghs_", "github_pat_",
	"xoxb-", "xapp-", "sk_live_", "AIza", "glpat-", "npm_", "redis", "[::1]",
	"-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", "-----END PRIVATE KEY-----",
}

// A planted credential: in is put in the text, none of bad may come out.
type plant struct{ in, bad string }

var planted = []plant{
	{"ghp_Plant3dT0kenXXXXXXXXXXXXXXXXXXXXXXX", "Plant3dT0ken"},
	{"github_pat_11Plant3dT0ken0123456789_abcdefghijklmnopqrstuvwxyz", "Plant3dT0ken"},
	{"AKIAPLANT3DKEY0ID0XX", "PLANT3DKEY0ID"},
	{"ASIAPLANT3DKEY0ID0XX", "PLANT3DKEY0ID"},
	{"xoxb-123456789012-1234567890123-Plant3dT0kenXXXXXXXX", "Plant3dT0ken"},
	{"xapp-1-A0123456789-1234567890123-Plant3dT0ken", "Plant3dT0ken"},
	{"sk_live_Plant3dT0kenXXXXXXXX", "Plant3dT0ken"},
	{"AIzaSyPlant3dT0ken-0123456789abcdefghijk", "Plant3dT0ken"},
	{"glpat-Plant3dT0kenXXXXXXXX", "Plant3dT0ken"},
	{"npm_Plant3dT0kenXXXXXXXXXXXXXXXXXXXXXXXX", "Plant3dT0ken"},
	{"eyJhbGciOiJIUzI1NiJ9.eyJQbGFudDNkIjoxfQ.Plant3dT0ken", "Plant3dT0ken"},
	{"-----BEGIN RSA PRIVATE KEY-----\n" + keyLine1 + "\nPlant3dT0kenXXXX\n-----END RSA PRIVATE KEY-----", "Plant3dT0ken"},
	{"-----BEGIN OPENSSH PRIVATE KEY-----\n" + keyLine1 + "\nPlant3dT0kenXXXX", "Plant3dT0ken"},
	// The tail of a key whose BEGIN a log tail cut off.
	{"\n" + keyLine1 + "\nPlant3dT0kenXXXX\n" + keyLine3 + "\n-----END PRIVATE KEY-----\n", "Plant3dT0ken"},
	{" postgres://app:Plant3d/T0ken@p@db:5432/x ", "Plant3d/T0ken"},
	{" redis://:Plant3dT0ken@cache ", "Plant3dT0ken"},
}

// FuzzString checks that String never panics, is idempotent, keeps valid
// UTF-8 valid, does not depend on the hints, and never lets a credential
// planted anywhere in the text through.
func FuzzString(f *testing.F) {
	for _, tc := range cases {
		f.Add(tc.in, uint(len(tc.in)/2))
	}
	for _, s := range []string{
		"authorization=token=abc", "token: token abcdefghij", "://password:pw@host", "ghs_ghs_ghs_ghs_ghs_ghs_",
	} {
		f.Add(s, uint(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, s string, at uint) {
		if len(s) > 4<<10 {
			// Longer than the logs previewd quotes: String is linear,
			// but 50 calls on it would only slow the fuzzer down.
			t.Skip()
		}
		// Random bytes rarely spell two credentials next to each other,
		// so the bytes of s also pick pieces of them.
		var pieces strings.Builder
		for i := 0; i < len(s) && i < 24; i++ {
			pieces.WriteString(vocabulary[int(s[i])%len(vocabulary)])
		}
		for _, in := range []string{s, pieces.String()} {
			check(t, in)
		}
		i := int(at % uint(len(s)+1))
		for _, p := range planted {
			in := s[:i] + p.in + s[i:]
			out := check(t, in)
			if strings.Contains(out, p.in) || strings.Contains(out, p.bad) && !strings.Contains(s, p.bad) {
				t.Fatalf("planted %q survived:\nin:  %q\nout: %q", p.in, in, out)
			}
		}
	})
}

// check returns String(in) after checking what holds for every input.
func check(t *testing.T, in string) string {
	t.Helper()
	out := String(in)
	if again := String(out); again != out {
		t.Fatalf("not idempotent:\nin:     %q\nonce:   %q\ntwice:  %q", in, out, again)
	}
	if utf8.ValidString(in) && !utf8.ValidString(out) {
		t.Fatalf("invalid UTF-8 out of valid:\nin:  %q\nout: %q", in, out)
	}
	if want := withoutHints(in); out != want {
		t.Fatalf("the hints changed the result:\nin:    %q\ngot:   %q\nwant:  %q", in, out, want)
	}
	return out
}

// withoutHints is String with every rule tried on all text.
func withoutHints(s string) string {
	for range maxPasses {
		t := s
		for i := range rules {
			t = rules[i].apply(t)
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
