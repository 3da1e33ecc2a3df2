package promtext

import (
	"strings"
	"testing"
)

func TestSum(t *testing.T) {
	m, err := Parse(strings.NewReader(`# TYPE apiserver_request_total counter
apiserver_request_total{code="404",verb="GET"} 3
apiserver_request_total{code="404",verb="LIST"} 2
apiserver_request_total{code="200",verb="GET"} 10
apiserver_request_total_other{code="404"} 100
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Sum("apiserver_request_total", "code", "404"); got != 5 {
		t.Errorf("Sum(code=404) = %v, want 5", got)
	}
	if got := m.Sum("apiserver_request_total"); got != 15 {
		t.Errorf("Sum() = %v, want 15", got)
	}
	if got := m.Sum("absent"); got != 0 {
		t.Errorf("Sum(absent) = %v, want 0", got)
	}
}
