package config

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

type kbSpec struct {
	Qualys Qualys
	KB     KB
}

func TestKBVarsAndDefaults(t *testing.T) {
	vars, err := Vars(Prefix, &KB{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range vars {
		names = append(names, v.Name)
	}
	want := []string{"QFETCH_ENABLED", "QFETCH_BATCH_SIZE", "QFETCH_DETAILS", "QFETCH_OVERLAP", "QFETCH_EVERY", "QFETCH_FULL_EVERY"}
	if !slices.Equal(names, want) {
		t.Errorf("KB alone: %q, want %q", names, want)
	}
	if vs, err := Vars(Prefix, &kbSpec{}); err != nil || !slices.ContainsFunc(vs, func(v Var) bool { return v.Name == "QFETCH_KB_FULL_EVERY" }) {
		t.Errorf("a spec's KB section reads no QFETCH_KB_FULL_EVERY (%v)", err)
	}
	setEnv(t, validEnv())
	var s kbSpec
	if err := Load(Prefix, &s); err != nil {
		t.Fatal(err)
	}
	wantKB := KB{Enabled: true, BatchSize: 1000, Details: "All", Overlap: time.Hour, FullEvery: 720 * time.Hour}
	if !reflect.DeepEqual(s.KB, wantKB) || s.Qualys.KBParams != nil {
		t.Errorf("defaults %+v, KB params %v; want %+v and none", s.KB, s.Qualys.KBParams, wantKB)
	}
}

func TestKBErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"off", with("QFETCH_KB_ENABLED", "false", "QFETCH_KB_EVERY", "24h"), nil},
		{"basic", with("QFETCH_KB_DETAILS", "Basic"), nil},
		{"batch too big", with("QFETCH_KB_BATCH_SIZE", "10001"), []string{"QFETCH_KB_BATCH_SIZE: must be between 1 and 10000, got 10001"}},
		{"batch zero", with("QFETCH_KB_BATCH_SIZE", "0"), []string{"QFETCH_KB_BATCH_SIZE: must be between 1 and 10000, got 0"}},
		{"details None", with("QFETCH_KB_DETAILS", "None"), []string{`QFETCH_KB_DETAILS: must be Basic or All, got "None"`}},
		{"negative overlap", with("QFETCH_KB_OVERLAP", "-1m"), []string{"QFETCH_KB_OVERLAP: must not be negative, got -1m0s"}},
		{"negative every", with("QFETCH_KB_EVERY", "-1h"), []string{"QFETCH_KB_EVERY: must not be negative, got -1h0m0s"}},
		{"full every zero", with("QFETCH_KB_FULL_EVERY", "0s"), []string{"QFETCH_KB_FULL_EVERY: must be positive, got 0s"}},
		// qfetch's own: the QIDs, the pass's window, the action.
		{"kb params owned", with("QFETCH_QUALYS_KB_PARAMS", "ids=1-999999"), []string{"QFETCH_QUALYS_KB_PARAMS: parameter ids is set by qfetch and cannot be given here"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			var s kbSpec
			got := errLines(Load(Prefix, &s))
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}
