package pattern

import (
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
)

// index is an immutable matching structure over a set of rules. Values are
// looked up per path (hash maps for exact values, maps per distinct length
// for prefixes and suffixes, a segment tree for numeric ranges, maps per
// prefix length for CIDR), so the work per event depends on the event and
// on how many rules match, not on how many rules exist. Only operators that
// match almost everything (anything-but, exists) and wildcards without a
// literal start or end are tested one by one.
type index struct {
	paths map[string]pathEntry
	pidx  []pathIdx

	// per field id
	fieldConj []int32
	fieldPid  []int32
	fieldReq  []bool // must be hit (no {"exists": false} alternative)

	conjs  []conjInfo
	always []int32 // conjunctions with no required field
	names  []string

	pool sync.Pool
}

type conjInfo struct {
	rule     int32
	required int32
	fields   []int32 // all field ids
	absent   []int32 // field ids with an {"exists": false} alternative
	multi    bool    // more than one field: array consistency may matter
}

type pathIdx struct {
	exactStr     map[string][]int32
	exactLit     [3][]int32 // true, false, null
	exactNum     map[float64][]int32
	exactNumText map[string][]int32
	prefix       []lenGroup
	suffix       []lenGroup
	eqIC         map[string][]int32
	prefixIC     []lenGroup
	suffixIC     []lenGroup
	numeric      *segTree
	cidr         []cidrGroup
	wcOps        []scanOp   // wildcard ops, addressed by the groups below
	wcPrefix     []lenGroup // ids are positions in wcOps
	wcSuffix     []lenGroup
	wcScan       []int32 // wcOps positions with no literal start or end
	scan         []scanOp
	exists       []int32
	needLower    bool
}

type lenGroup struct {
	n int
	m map[string][]int32
}

type cidrGroup struct {
	bits int
	is4  bool
	m    map[netip.Addr][]int32
}

type scanOp struct {
	fid int32
	op  *op
}

type ruleEntry struct {
	name string
	p    *Pattern
}

func litSlot(k byte) int {
	switch k {
	case 't':
		return 0
	case 'f':
		return 1
	}
	return 2
}

// buildIndex indexes rules (sorted by name by the caller when it matters).
func buildIndex(rules []ruleEntry) *index {
	ix := &index{paths: map[string]pathEntry{}}
	type numRange struct {
		fid int32
		op  *op
	}
	numRanges := map[int32][]numRange{}
	pidOf := func(path string) int32 {
		e, ok := ix.paths[path]
		if ok && e.leaf {
			return e.pid
		}
		e.leaf = true
		e.pid = int32(len(ix.pidx))
		ix.pidx = append(ix.pidx, pathIdx{})
		ix.paths[path] = e
		// mark every dotted prefix as interior
		for i := 0; i < len(path); i++ {
			if path[i] == '.' {
				pre := path[:i]
				pe := ix.paths[pre]
				pe.interior = true
				ix.paths[pre] = pe
			}
		}
		return e.pid
	}
	for ri, r := range rules {
		ix.names = append(ix.names, r.name)
		for _, c := range r.p.conjs {
			cid := int32(len(ix.conjs))
			ci := conjInfo{rule: int32(ri), multi: len(c.fields) > 1}
			for _, f := range c.fields {
				fid := int32(len(ix.fieldConj))
				pid := pidOf(f.path)
				ix.fieldConj = append(ix.fieldConj, cid)
				ix.fieldPid = append(ix.fieldPid, pid)
				ix.fieldReq = append(ix.fieldReq, !f.absentOK)
				ci.fields = append(ci.fields, fid)
				if f.absentOK {
					ci.absent = append(ci.absent, fid)
				} else {
					ci.required++
				}
				pi := &ix.pidx[pid]
				for _, o := range f.ops {
					switch o.kind {
					case opExactStr:
						pi.exactStr = addMap(pi.exactStr, o.s, fid)
					case opExactLit:
						s := litSlot(o.lit)
						pi.exactLit[s] = append(pi.exactLit[s], fid)
					case opExactNum:
						pi.exactNumText = addMap(pi.exactNumText, o.s, fid)
						if o.numByVal {
							if pi.exactNum == nil {
								pi.exactNum = map[float64][]int32{}
							}
							pi.exactNum[o.num] = append(pi.exactNum[o.num], fid)
						}
					case opPrefix:
						pi.prefix = addLen(pi.prefix, o.s, fid)
					case opSuffix:
						pi.suffix = addLen(pi.suffix, o.s, fid)
					case opEqualsIC:
						pi.eqIC = addMap(pi.eqIC, o.s, fid)
						pi.needLower = true
					case opPrefixIC:
						pi.prefixIC = addLen(pi.prefixIC, o.s, fid)
						pi.needLower = true
					case opSuffixIC:
						pi.suffixIC = addLen(pi.suffixIC, o.s, fid)
						pi.needLower = true
					case opNumeric:
						numRanges[pid] = append(numRanges[pid], numRange{fid, o})
					case opCIDR:
						pi.cidr = addCIDR(pi.cidr, o.prefix, fid)
					case opWildcard:
						pos := int32(len(pi.wcOps))
						pi.wcOps = append(pi.wcOps, scanOp{fid, o})
						if lp := o.wc.literalPrefix(); lp != "" {
							pi.wcPrefix = addLen(pi.wcPrefix, lp, pos)
						} else if ls := o.wc.literalSuffix(); ls != "" {
							pi.wcSuffix = addLen(pi.wcSuffix, ls, pos)
						} else {
							pi.wcScan = append(pi.wcScan, pos)
						}
					case opExists:
						pi.exists = append(pi.exists, fid)
					default: // the anything-but family
						if o.kind == opABIC {
							pi.needLower = true
						}
						pi.scan = append(pi.scan, scanOp{fid, o})
					}
				}
			}
			if ci.required == 0 {
				ix.always = append(ix.always, cid)
			}
			ix.conjs = append(ix.conjs, ci)
		}
	}
	for pid, rs := range numRanges {
		t := &segTree{}
		for _, r := range rs {
			t.addPoint(r.op.lo)
			t.addPoint(r.op.hi)
		}
		t.prepare()
		for _, r := range rs {
			t.insert(r.op, r.fid)
		}
		ix.pidx[pid].numeric = t
	}
	nf := len(ix.fieldConj)
	nc := len(ix.conjs)
	np := len(ix.pidx)
	nr := len(ix.names)
	ix.pool.New = func() any { return newScratch(nf, nc, np, nr) }
	return ix
}

func addMap(m map[string][]int32, k string, id int32) map[string][]int32 {
	if m == nil {
		m = map[string][]int32{}
	}
	m[k] = append(m[k], id)
	return m
}

func addLen(gs []lenGroup, s string, id int32) []lenGroup {
	for i := range gs {
		if gs[i].n == len(s) {
			gs[i].m[s] = append(gs[i].m[s], id)
			return gs
		}
	}
	gs = append(gs, lenGroup{n: len(s), m: map[string][]int32{s: {id}}})
	slices.SortFunc(gs, func(a, b lenGroup) int { return a.n - b.n })
	return gs
}

func addCIDR(gs []cidrGroup, p netip.Prefix, id int32) []cidrGroup {
	is4 := p.Addr().Is4()
	for i := range gs {
		if gs[i].bits == p.Bits() && gs[i].is4 == is4 {
			gs[i].m[p.Addr()] = append(gs[i].m[p.Addr()], id)
			return gs
		}
	}
	return append(gs, cidrGroup{bits: p.Bits(), is4: is4, m: map[netip.Addr][]int32{p.Addr(): {id}}})
}

// scratch is the per-call working memory of a match, pooled per index.
// Arrays indexed by field, conjunction, path and rule are "cleared" by
// bumping epoch.
type scratch struct {
	leaves  []leaf
	arr     []arrPos
	stack   []arrPos
	path    []byte
	nextArr int32

	epoch     uint32
	pathSeen  []uint32
	fieldSeen []uint32
	fieldHead []int32
	conjEp    []uint32
	conjCnt   []int32
	conjArr   []uint32 // epoch when a hit leaf of the conjunction sat in an array
	ruleSeen  []uint32
	touched   []int32
	hits      []hitRec
	matched   []int32
	chosen    []int32
	hitFields []int32
}

type hitRec struct {
	leaf int32
	next int32
}

func newScratch(nf, nc, np, nr int) *scratch {
	return &scratch{
		pathSeen:  make([]uint32, np),
		fieldSeen: make([]uint32, nf),
		fieldHead: make([]int32, nf),
		conjEp:    make([]uint32, nc),
		conjCnt:   make([]int32, nc),
		conjArr:   make([]uint32, nc),
		ruleSeen:  make([]uint32, nr),
	}
}

func (sc *scratch) reset() {
	sc.epoch++
	if sc.epoch == 0 { // wrapped: clear for real
		clear(sc.pathSeen)
		clear(sc.fieldSeen)
		clear(sc.conjEp)
		clear(sc.conjArr)
		clear(sc.ruleSeen)
		sc.epoch = 1
	}
	sc.leaves = sc.leaves[:0]
	sc.arr = sc.arr[:0]
	sc.stack = sc.stack[:0]
	sc.nextArr = 0
	sc.touched = sc.touched[:0]
	sc.hits = sc.hits[:0]
	sc.matched = sc.matched[:0]
}

// match returns the names of the matching rules, sorted, appended to dst.
func (ix *index) match(event []byte, dst []string) ([]string, error) {
	sc := ix.pool.Get().(*scratch)
	defer ix.pool.Put(sc)
	sc.reset()
	if err := scanEvent(event, ix.paths, sc); err != nil {
		return dst, err
	}
	ep := sc.epoch
	for li := range sc.leaves {
		l := &sc.leaves[li]
		sc.pathSeen[l.pid] = ep
		ix.pidx[l.pid].probe(ix, sc, l, int32(li))
	}
	for _, c := range sc.touched {
		ix.finish(sc, c)
	}
	for _, c := range ix.always {
		ix.finish(sc, c)
	}
	if len(sc.matched) == 0 {
		return dst, nil
	}
	slices.Sort(sc.matched)
	for _, r := range sc.matched {
		dst = append(dst, ix.names[r])
	}
	return dst, nil
}

// hit records that leaf li satisfies field fid.
func (sc *scratch) hit(ix *index, fid, li int32) {
	ep := sc.epoch
	c := ix.fieldConj[fid]
	if sc.fieldSeen[fid] != ep {
		sc.fieldSeen[fid] = ep
		sc.fieldHead[fid] = -1
		if sc.conjEp[c] != ep {
			sc.conjEp[c] = ep
			sc.conjCnt[c] = 0
			sc.touched = append(sc.touched, c)
		}
		if ix.fieldReq[fid] {
			sc.conjCnt[c]++
		}
	}
	if ix.conjs[c].multi {
		sc.hits = append(sc.hits, hitRec{leaf: li, next: sc.fieldHead[fid]})
		sc.fieldHead[fid] = int32(len(sc.hits) - 1)
		if sc.leaves[li].arrLen > 0 {
			sc.conjArr[c] = ep
		}
	}
}

func (sc *scratch) hitAll(ix *index, fids []int32, li int32) {
	for _, f := range fids {
		sc.hit(ix, f, li)
	}
}

// finish decides a conjunction whose required fields may all be hit.
func (ix *index) finish(sc *scratch, c int32) {
	ep := sc.epoch
	ci := &ix.conjs[c]
	if sc.ruleSeen[ci.rule] == ep {
		return
	}
	var cnt int32
	if sc.conjEp[c] == ep {
		cnt = sc.conjCnt[c]
	}
	if cnt < ci.required {
		return
	}
	for _, f := range ci.absent {
		if sc.fieldSeen[f] != ep && sc.pathSeen[ix.fieldPid[f]] == ep {
			return // present but no alternative matched
		}
	}
	if ci.multi && sc.conjEp[c] == ep && sc.conjArr[c] == ep && !ix.consistent(sc, ci) {
		return
	}
	sc.ruleSeen[ci.rule] = ep
	sc.matched = append(sc.matched, ci.rule)
}

// consistent reports whether one leaf can be chosen for every hit field so
// that no two chosen leaves sit in different elements of the same array
// (event-ruler's "array consistency": fields matched inside an array of
// objects must come from one element).
func (ix *index) consistent(sc *scratch, ci *conjInfo) bool {
	sc.hitFields = sc.hitFields[:0]
	for _, f := range ci.fields {
		if sc.fieldSeen[f] == sc.epoch {
			sc.hitFields = append(sc.hitFields, f)
		}
	}
	sc.chosen = sc.chosen[:0]
	return ix.choose(sc, 0)
}

func (ix *index) choose(sc *scratch, k int) bool {
	if k == len(sc.hitFields) {
		return true
	}
	for h := sc.fieldHead[sc.hitFields[k]]; h >= 0; h = sc.hits[h].next {
		li := sc.hits[h].leaf
		ok := true
		for _, other := range sc.chosen {
			if !sc.compatible(li, other) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		sc.chosen = append(sc.chosen, li)
		if ix.choose(sc, k+1) {
			return true
		}
		sc.chosen = sc.chosen[:len(sc.chosen)-1]
	}
	return false
}

func (sc *scratch) compatible(a, b int32) bool {
	la, lb := &sc.leaves[a], &sc.leaves[b]
	n := min(la.arrLen, lb.arrLen)
	pa := sc.arr[la.arrOff : la.arrOff+la.arrLen]
	pb := sc.arr[lb.arrOff : lb.arrOff+lb.arrLen]
	for i := int32(0); i < n; i++ {
		if pa[i].id != pb[i].id {
			return true
		}
		if pa[i].idx != pb[i].idx {
			return false
		}
	}
	return true
}

// probe finds every field at this path that the leaf satisfies.
func (pi *pathIdx) probe(ix *index, sc *scratch, l *leaf, li int32) {
	switch l.kind {
	case 's':
		v := bstr(l.val)
		if pi.exactStr != nil {
			sc.hitAll(ix, pi.exactStr[v], li)
		}
		for _, g := range pi.prefix {
			if len(v) < g.n {
				break
			}
			sc.hitAll(ix, g.m[v[:g.n]], li)
		}
		for _, g := range pi.suffix {
			if len(v) < g.n {
				break
			}
			sc.hitAll(ix, g.m[v[len(v)-g.n:]], li)
		}
		if pi.needLower {
			lv := bstr(l.lowered())
			if pi.eqIC != nil {
				sc.hitAll(ix, pi.eqIC[lv], li)
			}
			for _, g := range pi.prefixIC {
				if len(lv) < g.n {
					break
				}
				sc.hitAll(ix, g.m[lv[:g.n]], li)
			}
			for _, g := range pi.suffixIC {
				if len(lv) < g.n {
					break
				}
				sc.hitAll(ix, g.m[lv[len(lv)-g.n:]], li)
			}
		}
		if len(pi.wcOps) > 0 {
			for _, g := range pi.wcPrefix {
				if len(v) < g.n {
					break
				}
				for _, pos := range g.m[v[:g.n]] {
					if w := pi.wcOps[pos]; w.op.wc.match(v) {
						sc.hit(ix, w.fid, li)
					}
				}
			}
			for _, g := range pi.wcSuffix {
				if len(v) < g.n {
					break
				}
				for _, pos := range g.m[v[len(v)-g.n:]] {
					if w := pi.wcOps[pos]; w.op.wc.match(v) {
						sc.hit(ix, w.fid, li)
					}
				}
			}
			for _, pos := range pi.wcScan {
				if w := pi.wcOps[pos]; w.op.wc.match(v) {
					sc.hit(ix, w.fid, li)
				}
			}
		}
		if len(pi.cidr) > 0 && looksLikeIP(v) {
			if a, err := netip.ParseAddr(v); err == nil && a.Zone() == "" {
				for _, g := range pi.cidr {
					if g.is4 != a.Is4() {
						continue
					}
					p, err := a.Prefix(g.bits)
					if err == nil {
						sc.hitAll(ix, g.m[p.Addr()], li)
					}
				}
			}
		}
	case 'n':
		if pi.exactNumText != nil {
			sc.hitAll(ix, pi.exactNumText[bstr(l.val)], li)
		}
		if pi.exactNum != nil || pi.numeric != nil {
			if f, ok := l.number(); ok {
				if pi.exactNum != nil && math.Abs(f) <= numLimit {
					for _, fid := range pi.exactNum[f] {
						sc.hit(ix, fid, li)
					}
				}
				if pi.numeric != nil {
					pi.numeric.query(f, func(fid int32) { sc.hit(ix, fid, li) })
				}
			}
		}
	default:
		sc.hitAll(ix, pi.exactLit[litSlot(l.kind)], li)
	}
	sc.hitAll(ix, pi.exists, li)
	for _, s := range pi.scan {
		if s.op.match(l) {
			sc.hit(ix, s.fid, li)
		}
	}
}

// looksLikeIP is a cheap filter before netip.ParseAddr.
func looksLikeIP(v string) bool {
	return len(v) >= 2 && len(v) <= 45 && (strings.IndexByte(v, '.') >= 0 || strings.IndexByte(v, ':') >= 0)
}

// segTree answers "which numeric ranges contain x" in O(log n + matches).
// The distinct bounds cut the number line into elementary segments (each
// bound itself and the open gaps between bounds); every range is stored in
// O(log n) tree nodes covering its segments.
type segTree struct {
	pts   []float64
	nseg  int
	nodes [][]int32
}

func (t *segTree) addPoint(f float64) {
	if !math.IsInf(f, 0) {
		t.pts = append(t.pts, f)
	}
}

func (t *segTree) prepare() {
	sort.Float64s(t.pts)
	t.pts = slices.Compact(t.pts)
	t.nseg = 2*len(t.pts) + 1
	t.nodes = make([][]int32, 4*t.nseg)
}

func (t *segTree) pointIndex(f float64) int {
	return sort.SearchFloat64s(t.pts, f)
}

func (t *segTree) segOf(f float64) int {
	i := t.pointIndex(f)
	if i < len(t.pts) && t.pts[i] == f {
		return 2*i + 1
	}
	return 2 * i
}

func (t *segTree) insert(o *op, fid int32) {
	s0, s1 := 0, t.nseg-1
	if !math.IsInf(o.lo, -1) {
		i := t.pointIndex(o.lo)
		if o.loIncl {
			s0 = 2*i + 1
		} else {
			s0 = 2*i + 2
		}
	}
	if !math.IsInf(o.hi, 1) {
		j := t.pointIndex(o.hi)
		if o.hiIncl {
			s1 = 2*j + 1
		} else {
			s1 = 2 * j
		}
	}
	if s0 > s1 {
		return
	}
	t.add(1, 0, t.nseg-1, s0, s1, fid)
}

func (t *segTree) add(node, l, r, s0, s1 int, fid int32) {
	if s0 <= l && r <= s1 {
		t.nodes[node] = append(t.nodes[node], fid)
		return
	}
	m := (l + r) / 2
	if s0 <= m {
		t.add(2*node, l, m, s0, s1, fid)
	}
	if s1 > m {
		t.add(2*node+1, m+1, r, s0, s1, fid)
	}
}

func (t *segTree) query(f float64, fn func(int32)) {
	s := t.segOf(f)
	node, l, r := 1, 0, t.nseg-1
	for {
		for _, fid := range t.nodes[node] {
			fn(fid)
		}
		if l == r {
			return
		}
		m := (l + r) / 2
		if s <= m {
			node, r = 2*node, m
		} else {
			node, l = 2*node+1, m+1
		}
	}
}
