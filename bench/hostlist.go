package main

import (
	"context"
	"fmt"
)

// hostListDetails runs cmd/planner over hosts hosts at each Host List
// detail level (QFETCH_QUALYS_HOSTLIST_DETAILS), reps interleaved so that
// the machine's noise falls on every case alike: the planner's wall time,
// CPU and peak RSS, and the Host List bytes it stored. Basic and All are
// set against None, the IDs-only pages the planner asked for before #20.
func (h *harness) hostListDetails(ctx context.Context, hosts int64) error {
	sim, err := serveSim(simConfig(hosts))
	if err != nil {
		return err
	}
	defer sim.stop()
	levels := []string{"None", "Basic", "All"}
	rows := make([]*row, len(levels))
	for i, d := range levels {
		rows[i] = &row{Scenario: "hostlist", Case: "details=" + d, Size: hostsText(hosts)}
	}
	for rep := range h.o.reps {
		for i, d := range levels {
			s, err := h.plannerRep(ctx, sim, fmt.Sprintf("details-%s-%d", d, rep), "QFETCH_QUALYS_HOSTLIST_DETAILS="+d)
			if err != nil {
				return fmt.Errorf("details=%s: %w", d, err)
			}
			progress("hostlist %s details=%s %d/%d: %.2f s, CPU %.2f s, RSS %.1f MiB, Host List %.1f MiB (%.0f B/host)",
				hostsText(hosts), d, rep+1, h.o.reps, s.Seconds, s.CPUSeconds, float64(s.PeakRSS)/mib,
				float64(s.HostListBytes)/mib, float64(s.HostListBytes)/float64(s.Hosts))
			rows[i].Samples = append(rows[i].Samples, s)
		}
	}
	base := rows[0]
	base.derive()
	base.rssTarget()
	h.rep.add(base)
	baseBytes := median(each(base.Samples, func(s sample) float64 { return float64(s.HostListBytes) }))
	baseCPU := base.CPU
	for _, x := range rows[1:] {
		x.derive()
		x.rssTarget()
		x.against(base)
		h.rep.add(x)
		b := median(each(x.Samples, func(s sample) float64 { return float64(s.HostListBytes) }))
		h.rep.note("hostlist %s, %s vs details=None: Host List %.1f MiB vs %.1f MiB (%.1f×), planner time %.2f s vs %.2f s (%.2f×), CPU %.2f s vs %.2f s (%.2f×), peak RSS %.1f vs %.1f MiB",
			hostsText(hosts), x.Case, b/mib, baseBytes/mib, b/baseBytes, x.SecondsMed, base.SecondsMed, x.SecondsMed/base.SecondsMed,
			x.CPU, baseCPU, x.CPU/baseCPU, float64(x.RSSMed)/mib, float64(base.RSSMed)/mib)
	}
	return nil
}
