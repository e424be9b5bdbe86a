package app

import (
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/objstore"
)

func TestRole(t *testing.T) {
	for _, tc := range []struct {
		role     Role
		owns     bool
		partSize uint64
	}{
		{RolePlanner, false, objstore.MinPartSize},
		{RoleWorker, true, 0},
		{RoleExporter, false, 0},
	} {
		if got := tc.role.ownsConsumer(); got != tc.owns {
			t.Errorf("role %d owns the consumer: %v, want %v", tc.role, got, tc.owns)
		}
		if got := tc.role.partSize(); got != tc.partSize {
			t.Errorf("role %d part size %d, want %d", tc.role, got, tc.partSize)
		}
	}
}

func TestWorkerSpec(t *testing.T) {
	s := WorkerSpec{
		Qualys: config.Qualys{DetectionTruncationLimit: 500},
		Worker: config.Worker{Slots: 3, Grace: time.Second, ProbeEvery: 2 * time.Second, MaxBackoff: 3 * time.Second,
			AckWait: 4 * time.Second},
		S3: config.S3{Prefix: "p"},
	}
	c := s.FetchConfig()
	if c.Slots != 3 || c.TruncationLimit != 500 || c.Grace != time.Second || c.ProbeEvery != 2*time.Second ||
		c.MaxBackoff != 3*time.Second || c.Prefix != "" || c.Owner != "" {
		t.Errorf("FetchConfig = %+v", c)
	}
	if sec := s.Sections(); sec.AckWait != 4*time.Second || sec.S3.Prefix != "p" {
		t.Errorf("Sections = %+v", sec)
	}
}
