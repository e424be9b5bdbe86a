package ledger

import (
	"context"

	"github.com/qfetch/qfetch/internal/runid"
)

// KnowledgeBase passes are runs whose ID starts with runid.KBPrefix: the
// same records, done results, claims and splits as a detection run. Their
// watermark is apart, under kbWatermarkKey in QFETCH_STATE, and moved only
// by the planner, like the detection watermark.

// kbWatermarkKey in QFETCH_STATE holds the KnowledgeBase watermark; its KV
// history is the audit trail, as for the detection watermark.
const kbWatermarkKey = "kb-watermark"

// KBPassIDs returns the IDs of every KnowledgeBase pass record, ascending.
// RunIDs leaves them out, so that everything about detection runs (the
// watermark, latest.json, the planner's scan) never meets a KB pass.
func (l *Ledger) KBPassIDs(ctx context.Context) ([]string, error) {
	return l.recordIDs(ctx, runid.IsKB)
}

// KBWatermark returns the KnowledgeBase watermark (Time is the Before of the
// last completed KB pass), or an error wrapping [ErrNoWatermark].
func (l *Ledger) KBWatermark(ctx context.Context) (Watermark, error) {
	return l.readWatermark(ctx, kbWatermarkKey)
}

// AdvanceKBWatermark moves the KB watermark forward to w, by compare-and-set
// against the revision read; false when it was already at or past w.
func (l *Ledger) AdvanceKBWatermark(ctx context.Context, w Watermark) (bool, error) {
	return l.advanceWatermark(ctx, kbWatermarkKey, w)
}

// KBWatermarkHistory returns the KB watermark's past values, oldest first
// (the last 64).
func (l *Ledger) KBWatermarkHistory(ctx context.Context) ([]Watermark, error) {
	return l.watermarkHistory(ctx, kbWatermarkKey)
}
