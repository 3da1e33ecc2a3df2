package githubfake_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v66/github"

	"github.com/previewd/previewd/github/githubfake"
)

const (
	appID          = 4242
	installationID = 77
)

func rsaKey(t testing.TB) (*rsa.PrivateKey, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

// signJWT signs claims with RS256, for the cases ghinstallation never sends.
func signJWT(t testing.TB, key *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(claims)
	digest := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

type appFixture struct {
	f       *githubfake.Server
	key     *rsa.PrivateKey
	keyPEM  []byte
	offset  *atomic.Int64 // added to the fake's clock
	baseURL string        // for ghinstallation (no trailing slash)
}

func newAppFake(t *testing.T) appFixture {
	key, keyPEM := rsaKey(t)
	pub, err := githubfake.ParseRSAPublicKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	offset := new(atomic.Int64)
	f := newFake(t, githubfake.Options{
		Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) },
		App: &githubfake.App{ID: appID, PublicKey: pub, Installations: map[int64]string{installationID: owner}},
	})
	openPRs(t, f, 1)
	return appFixture{f: f, key: key, keyPEM: keyPEM, offset: offset, baseURL: strings.TrimSuffix(f.APIURL(), "/")}
}

func TestInstallationTokenExchange(t *testing.T) {
	a := newAppFake(t)
	c := ctx(t)

	atr, err := ghinstallation.NewAppsTransport(http.DefaultTransport, appID, a.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	atr.BaseURL = a.baseURL
	itr := ghinstallation.NewFromAppsTransport(atr, installationID)
	itr.BaseURL = a.baseURL

	// The App (JWT) finds the installation of a repository.
	appClient := github.NewClient(&http.Client{Transport: atr})
	appClient.BaseURL = mustURL(t, a.f.APIURL())
	inst, _, err := appClient.Apps.FindRepositoryInstallation(c, owner, name)
	if err != nil || inst.GetID() != installationID || inst.GetAppID() != appID {
		t.Fatalf("installation = %+v, %v", inst, err)
	}

	// The installation token acts as previewd[bot].
	gh := github.NewClient(&http.Client{Transport: itr})
	gh.BaseURL = mustURL(t, a.f.APIURL())
	cm, _, err := gh.Issues.CreateComment(c, owner, name, 1, &github.IssueComment{Body: github.String("<!-- previewd -->")})
	if err != nil {
		t.Fatal(err)
	}
	if cm.GetUser().GetLogin() != "previewd[bot]" || cm.GetUser().GetType() != "Bot" {
		t.Fatalf("comment by %+v", cm.GetUser())
	}
	if got := a.f.Comments(repo, 1); len(got) != 1 || got[0].Login != "previewd[bot]" {
		t.Fatalf("comments = %+v", got)
	}

	token, err := itr.Token(c)
	if err != nil || !strings.HasPrefix(token, "ghs_") {
		t.Fatalf("token %q, %v", token, err)
	}
	if r, ok := a.f.RateLimit(token); !ok || r.Used != 1 || r.Limit != githubfake.DefaultRateLimit {
		t.Fatalf("installation bucket = %+v", r)
	}
	// An installation token is not a user.
	_, _, err = gh.Users.Get(c, "")
	errorResponse(t, err, http.StatusForbidden)

	// Tokens of one installation share its bucket.
	tok2, _, err := appClient.Apps.CreateInstallationToken(c, installationID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok2.GetToken() == token || tok2.GetExpiresAt().Before(time.Now().Add(59*time.Minute)) {
		t.Fatalf("second token %+v", tok2)
	}
	if r, _ := a.f.RateLimit(tok2.GetToken()); r.Used != 2 {
		t.Fatalf("shared bucket used = %d, want 2", r.Used)
	}
	if a.f.Counters().Route(githubfake.RouteCreateInstallationToken, http.StatusCreated) != 2 {
		t.Fatalf("by route = %v", a.f.Counters().ByRoute)
	}

	// Installation tokens expire after an hour.
	a.offset.Store(int64(61 * time.Minute))
	if resp, _ := rawGet(t, a.f.APIURL()+"repos/acme/shop/pulls", token); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired token: %d", resp.StatusCode)
	}
}

func TestInstallationTokenRejectsBadJWTs(t *testing.T) {
	a := newAppFake(t)
	c := ctx(t)
	wrongKey, wrongPEM := rsaKey(t)

	// Signed by another key, through ghinstallation.
	atr, err := ghinstallation.NewAppsTransport(http.DefaultTransport, appID, wrongPEM)
	if err != nil {
		t.Fatal(err)
	}
	atr.BaseURL = a.baseURL
	itr := ghinstallation.NewFromAppsTransport(atr, installationID)
	itr.BaseURL = a.baseURL
	if _, err := itr.Token(c); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("token with a wrong key: %v", err)
	}

	now := time.Now()
	cases := map[string]struct {
		key    *rsa.PrivateKey
		claims map[string]any
		inst   int64
		status int
	}{
		"valid":            {a.key, map[string]any{"iss": appID, "iat": now.Add(-time.Minute).Unix(), "exp": now.Add(9 * time.Minute).Unix()}, installationID, 201},
		"wrong key":        {wrongKey, map[string]any{"iss": "4242", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}, installationID, 401},
		"exp too far":      {a.key, map[string]any{"iss": "4242", "iat": now.Unix(), "exp": now.Add(11 * time.Minute).Unix()}, installationID, 401},
		"expired":          {a.key, map[string]any{"iss": "4242", "iat": now.Add(-5 * time.Minute).Unix(), "exp": now.Add(-time.Minute).Unix()}, installationID, 401},
		"iat in future":    {a.key, map[string]any{"iss": "4242", "iat": now.Add(5 * time.Minute).Unix(), "exp": now.Add(6 * time.Minute).Unix()}, installationID, 401},
		"other app":        {a.key, map[string]any{"iss": "1", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}, installationID, 401},
		"unknown install.": {a.key, map[string]any{"iss": "4242", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}, 78, 404},
	}
	for label, tc := range cases {
		t.Run(label, func(t *testing.T) {
			jwt := signJWT(t, tc.key, tc.claims)
			client := github.NewClient(nil).WithAuthToken(jwt)
			client.BaseURL = mustURL(t, a.f.APIURL())
			_, _, err := client.Apps.CreateInstallationToken(c, tc.inst, nil)
			if tc.status == 201 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			errorResponse(t, err, tc.status)
		})
	}

	// A personal token is not a JWT.
	client := newClient(t, a.f, tok, uncached)
	_, _, err = client.Apps.CreateInstallationToken(c, installationID, nil)
	errorResponse(t, err, http.StatusUnauthorized)
}
