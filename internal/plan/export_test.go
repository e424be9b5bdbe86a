package plan

import (
	"context"

	"github.com/qfetch/qfetch/internal/ledger"
)

// FreezeLock stops p's passes from refreshing the planner lock, as a frozen
// pod would: the lock lapses after its TTL while the pass runs on unaware.
func FreezeLock(p *Planner) {
	p.keep = func(_ *ledger.Lock, ctx context.Context) error {
		<-ctx.Done()
		return nil
	}
}
