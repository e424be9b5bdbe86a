package runstat_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/runstat"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

// TestTablesIncompleteRuns: a complete run whose tables are not complete
// counts in qfetch_tables_incomplete_runs once the grace after its
// completion has passed, and no longer once its tables complete.
func TestTablesIncompleteRuns(t *testing.T) {
	e := testrun.New(t, testrun.Options{Hosts: 200, BatchSize: 50, PageSize: 100})
	tq, err := msg.SetupTables(t.Context(), e.JS, msg.TablesConfig{AckWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.Q.Tables = tq
	run := e.Plan().Run
	e.Work(e.Complete(run)) // no table loop: the conversions wait

	reporter := func(grace time.Duration) reporter {
		reg := prometheus.NewRegistry()
		r := e.Parts("exporter").Reporter(runstat.ReporterConfig{Every: time.Minute, TablesGrace: grace},
			runstat.NewMetrics(reg))
		return reporter{Reporter: r, reg: reg}
	}
	const name = "qfetch_tables_incomplete_runs"
	late, early := reporter(time.Nanosecond), reporter(time.Hour)
	late.refresh(t)
	early.refresh(t)
	late.want(t, name, nil, 1)
	early.want(t, name, nil, 0)

	loop := e.Parts("").TableLoop(2)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = loop.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	testenv.Eventually(t, time.Minute, func() bool {
		late.refresh(t)
		v, _ := late.value(t, name, nil)
		return v == 0
	}, "the run's tables completed and still count as incomplete")
	st, err := e.Parts("").TableBuilder().Status(t.Context(), run)
	if err != nil || !st.Complete {
		t.Fatalf("tables %+v (%v), want complete", st, err)
	}
}
