// Package qualys talks to the Qualys VM API v2: Host List, detection and
// KnowledgeBase paging, requests, error documents, limit headers and error classes.
//
// It streams: host IDs are yielded while a page arrives, detection bodies are
// handed to the caller as a validating reader, and nothing holds a whole
// response in memory. Errors carry a [failure.Class]; inspect the Qualys
// details with errors.As(err, &APIError{}).
package qualys
