package githubfake

import (
	"maps"
	"time"
)

// Request is one API request as the fake saw it.
type Request struct {
	Time   time.Time `json:"time"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	// Route is the route template, or RouteUnknown.
	Route string `json:"route"`
	// Repo is "owner/name" for repository routes.
	Repo  string `json:"repo,omitempty"`
	Token string `json:"token,omitempty"`
	Login string `json:"login,omitempty"`
	// Status is 0 when no answer was sent (Hang, Drop, client gone).
	Status      int  `json:"status"`
	Charged     bool `json:"charged,omitempty"`
	NotModified bool `json:"not_modified,omitempty"`
	// Fault is true when a fault, or the client leaving during a delay,
	// decided the answer.
	Fault bool `json:"fault,omitempty"`
}

// Counters counts API requests (not control requests) since the start or the
// last ResetCounters.
type Counters struct {
	Requests    int `json:"requests"`
	Charged     int `json:"charged"`
	NotModified int `json:"not_modified"`
	// Mutations counts POST, PATCH, PUT and DELETE requests, which GitHub's
	// secondary limits weigh more.
	Mutations int `json:"mutations"`
	// ByRoute counts requests by route template and status (0: unanswered).
	ByRoute map[string]map[int]int `json:"by_route"`
	// ByToken counts requests by the token they authenticated with.
	ByToken map[string]TokenCounters `json:"by_token"`
}

// TokenCounters counts one token's requests.
type TokenCounters struct {
	Requests    int `json:"requests"`
	Charged     int `json:"charged"`
	NotModified int `json:"not_modified"`
}

// Route counts the requests to route answered with status, or with any
// status when status is 0 (unanswered requests are ByRoute[route][0]).
func (c Counters) Route(route string, status int) int {
	if status != 0 {
		return c.ByRoute[route][status]
	}
	n := 0
	for _, v := range c.ByRoute[route] {
		n += v
	}
	return n
}

type counterSet struct {
	c Counters
}

func newCounterSet() counterSet {
	return counterSet{c: Counters{ByRoute: map[string]map[int]int{}, ByToken: map[string]TokenCounters{}}}
}

// record counts a request and adds it to the journal. s.mu must be held.
func (s *Server) record(rec Request) {
	c := &s.counters.c
	c.Requests++
	if rec.Charged {
		c.Charged++
	}
	if rec.NotModified {
		c.NotModified++
	}
	switch rec.Method {
	case "POST", "PATCH", "PUT", "DELETE":
		c.Mutations++
	}
	if c.ByRoute[rec.Route] == nil {
		c.ByRoute[rec.Route] = map[int]int{}
	}
	c.ByRoute[rec.Route][rec.Status]++
	if rec.Token != "" {
		tc := c.ByToken[rec.Token]
		tc.Requests++
		if rec.Charged {
			tc.Charged++
		}
		if rec.NotModified {
			tc.NotModified++
		}
		c.ByToken[rec.Token] = tc
	}
	if n := s.opts.JournalSize; n > 0 {
		if len(s.journal) >= n {
			copy(s.journal, s.journal[len(s.journal)-n+1:])
			s.journal = s.journal[:n-1]
		}
		s.journal = append(s.journal, rec)
	}
	s.log.Debug("github request", "method", rec.Method, "path", rec.Path, "route", rec.Route,
		"status", rec.Status, "login", rec.Login, "charged", rec.Charged, "fault", rec.Fault)
}

// Counters returns a snapshot of the counters.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counters.c
	c.ByRoute = make(map[string]map[int]int, len(c.ByRoute))
	for k, v := range s.counters.c.ByRoute {
		c.ByRoute[k] = maps.Clone(v)
	}
	c.ByToken = maps.Clone(s.counters.c.ByToken)
	return c
}

// ResetCounters zeroes the counters and empties the journal. Rate limits are
// not touched.
func (s *Server) ResetCounters() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counters = newCounterSet()
	s.journal = nil
}

// Requests returns the journal of API requests, oldest first (at most
// Options.JournalSize of the newest).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.journal...)
}
