package pattern

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Matcher matches events against many named rules at once. Its zero value
// is not usable; call NewMatcher.
//
// It is safe for concurrent use. The rules are indexed into an immutable
// snapshot that Match reads without locks; Add and Remove only record the
// change, and the next Match rebuilds the snapshot once (O(rules)), so a
// burst of Adds costs one rebuild. Match cost does not grow with the number
// of rules: it depends on the event and on how many rules match.
type Matcher struct {
	mu    sync.Mutex
	rules map[string]*Pattern
	snap  atomic.Pointer[index] // nil after a change
}

// NewMatcher returns an empty Matcher.
func NewMatcher() *Matcher {
	return &Matcher{rules: map[string]*Pattern{}}
}

// Add adds the rule, replacing any rule of the same name.
func (m *Matcher) Add(name string, p *Pattern) error {
	if p == nil {
		return errors.New("pattern: Add: nil pattern")
	}
	m.mu.Lock()
	m.rules[name] = p
	m.snap.Store(nil)
	m.mu.Unlock()
	return nil
}

// Remove removes the rule; removing an unknown name does nothing.
func (m *Matcher) Remove(name string) {
	m.mu.Lock()
	if _, ok := m.rules[name]; ok {
		delete(m.rules, name)
		m.snap.Store(nil)
	}
	m.mu.Unlock()
}

// Len returns the number of rules.
func (m *Matcher) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rules)
}

// Match returns the names of the rules the event (any JSON object) matches,
// sorted. The error wraps ErrInvalidEvent when the event is not a valid JSON
// object.
func (m *Matcher) Match(event []byte) ([]string, error) {
	return m.snapshot().match(event, nil)
}

func (m *Matcher) snapshot() *index {
	if ix := m.snap.Load(); ix != nil {
		return ix
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if ix := m.snap.Load(); ix != nil {
		return ix
	}
	entries := make([]ruleEntry, 0, len(m.rules))
	for name, p := range m.rules {
		entries = append(entries, ruleEntry{name: name, p: p})
	}
	slices.SortFunc(entries, func(a, b ruleEntry) int { return strings.Compare(a.name, b.name) })
	ix := buildIndex(entries)
	m.snap.Store(ix)
	return ix
}
