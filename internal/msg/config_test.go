package msg

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaultsAndValidate(t *testing.T) {
	def := Config{}.withDefaults()
	if err := def.validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if def.DuplicateWindow != 6*time.Hour || def.MaxInFlight != 2 || def.StreamReplicas != 1 {
		t.Errorf("unexpected defaults: %+v", def)
	}
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" = valid
	}{
		{"replicas too high", Config{StreamReplicas: 7}, "stream replicas"},
		{"negative in flight", Config{MaxInFlight: -1}, "max in flight"},
		{"tiny ack wait", Config{AckWait: time.Millisecond}, "ack wait"},
		{"no failures allowed", Config{MaxFailures: -1}, "max failures"},
		{"tiny max msg", Config{MaxMsgSize: 10}, "max message size"},
		{"negative dlq age", Config{DLQMaxAge: -time.Hour}, "dead-letter max age"},
		{"tiny duplicate window", Config{DuplicateWindow: time.Millisecond}, "duplicate window"},
		{"cluster", Config{StreamReplicas: 3, MaxInFlight: 10, DLQMaxAge: 720 * time.Hour}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.withDefaults().validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("want error about %q, got %v", tt.want, err)
			}
		})
	}
}
