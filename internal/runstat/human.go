package runstat

import "fmt"

// Bytes is n for people, in IEC units (KiB, MiB, …, powers of 1024): the one
// unit every qfetch command, log line and summary shows sizes in.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	sign, m := "", uint64(n)
	if n < 0 {
		// Two's complement: MinInt64's magnitude fits a uint64.
		sign, m = "-", -m
	}
	// The unit is chosen on the printed value, so that a size rounding
	// up to 1024.0 of one unit reads as 1.0 of the next.
	f, exp := float64(m)/unit, 0
	for f >= unit-0.05 && exp < 5 {
		f /= unit
		exp++
	}
	return fmt.Sprintf("%s%.1f %ciB", sign, f, "KMGTPE"[exp])
}

// Count is n and the noun it counts, singular for exactly one: "1 batch",
// "0 batches", "2 batches".
func Count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
