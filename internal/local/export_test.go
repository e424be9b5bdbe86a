package local

// DefaultDirFrom is defaultDir, for the table test.
var DefaultDirFrom = defaultDir
