package leak

import "testing"

// TestCheckFindsALeak: a goroutine blocked forever is reported; once it
// ends, nothing is.
func TestCheckFindsALeak(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); <-stop }()
	if err := Check(); err == nil {
		t.Error("a blocked goroutine was not reported")
	}
	close(stop)
	<-done
	if err := Check(); err != nil {
		t.Errorf("reported after it ended: %v", err)
	}
}
