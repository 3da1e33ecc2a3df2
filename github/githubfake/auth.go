package githubfake

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultLogin is the login of tokens added without one.
const DefaultLogin = "previewd-test"

type token struct {
	value        string
	login        string
	bucket       *bucket
	installation int64     // 0 for personal tokens
	expires      time.Time // zero: never
}

// bucket is one primary rate limit: a personal token's or an installation's.
type bucket struct {
	limit   int
	used    int
	reset   time.Time
	subject string // "user ID 7", "installation ID 1" (for the 403 message)
}

// refresh starts a new one-hour window when the old one has passed.
func (b *bucket) refresh(now time.Time) {
	if b.reset.IsZero() || !now.Before(b.reset) {
		b.used = 0
		b.reset = now.Add(time.Hour).Truncate(time.Second)
	}
}

func (b *bucket) remaining() int { return max(b.limit-b.used, 0) }

func (b *bucket) headers(h http.Header) {
	h.Set("X-RateLimit-Limit", strconv.Itoa(b.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(b.remaining()))
	h.Set("X-RateLimit-Used", strconv.Itoa(min(b.used, b.limit)))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(b.reset.Unix(), 10))
	h.Set("X-RateLimit-Resource", "core")
}

// Rate is the state of a token's primary rate limit.
type Rate struct {
	Limit     int       `json:"limit"`
	Remaining int       `json:"remaining"`
	Used      int       `json:"used"`
	Reset     time.Time `json:"reset"`
}

// AddToken registers a personal access token for DefaultLogin with its own
// rate limit bucket; limit <= 0 means Options.RateLimit.
func (s *Server) AddToken(tok string, limit int) {
	s.AddTokenAs(tok, DefaultLogin, limit)
}

// AddTokenAs registers a token whose requests act as login; a login ending in
// "[bot]" is a Bot, as GitHub App bots are (e.g. "previewd[bot]"). The token
// gets its own bucket; limit <= 0 means Options.RateLimit. Adding a known
// token again replaces it and refills its bucket.
func (s *Server) AddTokenAs(tok, login string, limit int) {
	if login == "" {
		login = DefaultLogin
	}
	if limit <= 0 {
		limit = s.opts.RateLimit
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &bucket{limit: limit, subject: fmt.Sprintf("user ID %d", s.userID(login))}
	s.buckets["token:"+tok] = b
	s.tokens[tok] = &token{value: tok, login: login, bucket: b}
}

// RevokeToken makes tok unknown: later requests with it get 401.
func (s *Server) RevokeToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, tok)
}

// RateLimit reports the primary rate limit of tok's bucket (shared by all
// tokens of an App installation).
func (s *Server) RateLimit(tok string) (Rate, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[tok]
	if t == nil {
		return Rate{}, false
	}
	t.bucket.refresh(s.clock())
	return t.bucket.rate(), true
}

func (b *bucket) rate() Rate {
	return Rate{Limit: b.limit, Remaining: b.remaining(), Used: min(b.used, b.limit), Reset: b.reset}
}

// SetRateRemaining sets how many requests tok's bucket has left in the
// current window, e.g. 0 to make the next request answer 403.
func (s *Server) SetRateRemaining(tok string, remaining int) error {
	return s.editBucket(tok, func(b *bucket) { b.used = b.limit - min(max(remaining, 0), b.limit) })
}

// editBucket changes tok's rate limit bucket in its current window.
func (s *Server) editBucket(tok string, edit func(*bucket)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[tok]
	if t == nil {
		return fmt.Errorf("token: %w", ErrNotFound)
	}
	t.bucket.refresh(s.clock())
	edit(t.bucket)
	return nil
}

// SetRateReset moves the end of tok's current rate limit window (when its
// bucket refills) to reset.
func (s *Server) SetRateReset(tok string, reset time.Time) error {
	return s.editBucket(tok, func(b *bucket) { b.reset = reset.Truncate(time.Second) })
}

// TokenInfo describes a registered token (GET /_fake/tokens).
type TokenInfo struct {
	Token          string    `json:"token"`
	Login          string    `json:"login"`
	InstallationID int64     `json:"installation_id,omitempty"`
	ExpiresAt      time.Time `json:"expires_at,omitzero"`
	Rate           Rate      `json:"rate"`
}

// Tokens lists the registered tokens, sorted by token.
func (s *Server) Tokens() []TokenInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	list := make([]TokenInfo, 0, len(s.tokens))
	for _, t := range s.tokens {
		t.bucket.refresh(now)
		list = append(list, TokenInfo{Token: t.value, Login: t.login, InstallationID: t.installation, ExpiresAt: t.expires, Rate: t.bucket.rate()})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Token < list[j].Token })
	return list
}

// authenticate resolves the Authorization header to a token; the message is
// GitHub's when it does not.
func (s *Server) authenticate(authz string, now time.Time) (*token, string) {
	if authz == "" {
		return nil, "Requires authentication"
	}
	scheme, cred, ok := strings.Cut(authz, " ")
	if !ok || !(strings.EqualFold(scheme, "token") || strings.EqualFold(scheme, "bearer")) {
		return nil, "Bad credentials"
	}
	t := s.tokens[strings.TrimSpace(cred)]
	if t == nil || (!t.expires.IsZero() && !now.Before(t.expires)) {
		return nil, "Bad credentials"
	}
	return t, ""
}

// verifyAppJWT checks an App JWT as GitHub does: RS256 signed by the App's
// key, iss = App id (or client id), iat not in the future, exp in the future
// and at most 10 minutes away. It returns GitHub's message, or "" when valid.
func (s *Server) verifyAppJWT(authz string, now time.Time) string {
	const undecodable = "A JSON web token could not be decoded"
	app := s.opts.App
	scheme, jwt, ok := strings.Cut(authz, " ")
	if app == nil || app.PublicKey == nil || !ok || !strings.EqualFold(scheme, "bearer") {
		return undecodable
	}
	parts := strings.Split(strings.TrimSpace(jwt), ".")
	if len(parts) != 3 {
		return undecodable
	}
	var head struct {
		Alg string `json:"alg"`
	}
	if err := decodeSegment(parts[0], &head); err != nil || head.Alg != "RS256" {
		return undecodable
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return undecodable
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(app.PublicKey, crypto.SHA256, digest[:], sig) != nil {
		return undecodable
	}
	var claims map[string]any
	if err := decodeSegment(parts[1], &claims); err != nil {
		return undecodable
	}
	exp, ok := claims["exp"].(json.Number)
	expAt, err := exp.Int64()
	if !ok || err != nil || expAt <= now.Unix() {
		return "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
	}
	if time.Unix(expAt, 0).After(now.Add(10*time.Minute + time.Second)) {
		return "'Expiration time' claim ('exp') is too far in the future"
	}
	iat, ok := claims["iat"].(json.Number)
	iatAt, err := iat.Int64()
	if !ok || err != nil || time.Unix(iatAt, 0).After(now.Add(time.Minute)) {
		return "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
	}
	var iss string
	switch v := claims["iss"].(type) {
	case json.Number:
		iss = v.String()
	case string:
		iss = v
	default:
		return "'Issuer' claim ('iss') must be an Integer"
	}
	if iss != strconv.FormatInt(app.ID, 10) && (app.ClientID == "" || iss != app.ClientID) {
		return "Integration not found"
	}
	return ""
}

func decodeSegment(seg string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}

// installationAccount reports the account of an installation, and whether
// the installation exists.
func (s *Server) installationAccount(id int64) (string, bool) {
	if len(s.opts.App.Installations) == 0 {
		return "", id > 0
	}
	acct, ok := s.opts.App.Installations[id]
	return acct, ok
}

// installationPermissions are the permissions every installation token gets.
var installationPermissions = map[string]string{
	"checks":        "read",
	"contents":      "read",
	"deployments":   "write",
	"issues":        "write",
	"metadata":      "read",
	"pull_requests": "write",
	"statuses":      "write",
}

func (s *Server) createInstallationToken(c *call) reply {
	id, ok := c.intParam("installation_id")
	if !ok {
		return notFound()
	}
	if _, ok := s.installationAccount(id); !ok {
		return notFound()
	}
	app := s.opts.App
	key := fmt.Sprintf("installation:%d", id)
	b := s.buckets[key]
	if b == nil {
		b = &bucket{limit: app.RateLimit, subject: fmt.Sprintf("installation ID %d", id)}
		s.buckets[key] = b
	}
	value := "ghs_" + randomString(36)
	expires := c.now.Add(app.TokenTTL).Truncate(time.Second)
	s.tokens[value] = &token{value: value, login: app.Slug + "[bot]", bucket: b, installation: id, expires: expires}
	return reply{status: http.StatusCreated, body: map[string]any{
		"token":                value,
		"expires_at":           ts(expires),
		"permissions":          installationPermissions,
		"repository_selection": "all",
	}}
}

func (s *Server) getRepoInstallation(c *call) reply {
	app := s.opts.App
	id := int64(1)
	if len(app.Installations) > 0 {
		id = 0
		for iid, acct := range app.Installations {
			if strings.EqualFold(acct, c.repo.owner) && (id == 0 || iid < id) {
				id = iid
			}
		}
		if id == 0 {
			return notFound()
		}
	}
	return reply{status: http.StatusOK, body: map[string]any{
		"id":                   id,
		"app_id":               app.ID,
		"app_slug":             app.Slug,
		"account":              s.userJSON(c, c.repo.owner),
		"target_type":          "Organization",
		"repository_selection": "all",
		"permissions":          installationPermissions,
		"access_tokens_url":    fmt.Sprintf("%sapp/installations/%d/access_tokens", c.api, id),
		"created_at":           ts(s.started),
		"updated_at":           ts(s.started),
	}}
}

func (s *Server) getRateLimit(c *call) reply {
	core := Rate{Limit: 60, Remaining: 60, Reset: c.now.Add(time.Hour).Truncate(time.Second)}
	if c.tok != nil {
		core = c.tok.bucket.rate()
	}
	res := func(limit, used int, reset time.Time) map[string]any {
		return map[string]any{"limit": limit, "used": used, "remaining": limit - used, "reset": reset.Unix()}
	}
	reset := c.now.Add(time.Hour).Truncate(time.Second)
	coreJSON := res(core.Limit, core.Used, core.Reset)
	rate := res(core.Limit, core.Used, core.Reset)
	rate["resource"] = "core"
	return reply{status: http.StatusOK, noCache: true, body: map[string]any{
		"resources": map[string]any{
			"core":                 coreJSON,
			"search":               res(30, 0, c.now.Add(time.Minute).Truncate(time.Second)),
			"graphql":              res(core.Limit, 0, reset),
			"integration_manifest": res(5000, 0, reset),
			"code_search":          res(10, 0, c.now.Add(time.Minute).Truncate(time.Second)),
		},
		"rate": rate,
	}}
}

func (s *Server) getUser(c *call) reply {
	if c.tok.installation != 0 {
		return errReply(http.StatusForbidden, "Resource not accessible by integration", "https://docs.github.com/rest/users/users#get-the-authenticated-user")
	}
	return reply{status: http.StatusOK, body: s.userJSON(c, c.tok.login)}
}

const alphanum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func randomString(n int) string {
	b := make([]byte, n)
	for i := range b {
		v, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphanum))))
		if err != nil {
			panic(err)
		}
		b[i] = alphanum[v.Int64()]
	}
	return string(b)
}

// ParseRSAPublicKeyPEM reads an RSA public key from PEM: a PKIX "PUBLIC KEY",
// a PKCS#1 "RSA PUBLIC KEY", or a private key (PKCS#1 or PKCS#8) whose public
// half is taken, so the App's private key file works as it is.
func ParseRSAPublicKeyPEM(data []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("parsing RSA key: no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("parsing RSA key: unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing RSA key: %w", err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		return k, nil
	case *rsa.PrivateKey:
		return &k.PublicKey, nil
	}
	return nil, fmt.Errorf("parsing RSA key: %T is not an RSA key", key)
}
