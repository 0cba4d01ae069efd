package policy

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/interpreter"
)

// The CEL schema.
//
// credit, transaction, signals and each signal are CEL object types ("outpost.Credit", ...) served
// by a small types.Provider of this package, so the checker knows every field and its type: a typo
// such as signals.tongdun.scroe, or comparing a string field with a number, is a load error. At
// run time the fields are read through FieldType.GetFrom straight from the Input (through views
// that live in a pooled evaluation context), so no map is built per decision.
const (
	typeCredit      = "outpost.Credit"
	typeTransaction = "outpost.Transaction"
	typeSignal      = "outpost.Signal"
	typeSignals     = "outpost.Signals"
)

// Cost limits.
//
// An expression whose estimated worst-case cost (CEL's static estimator, told how large inputs can
// be) exceeds maxRuleCost is refused at load. The estimate is sound because Decide refuses inputs
// beyond the sizes the estimator assumes (strings over maxStringSize, see invalidInput) and
// reason_ids is cut at maxReasonIDs.
//
// As a backstop, expressions estimated above trackCostAbove (in practice: anything with a
// comprehension macro or heavy string work) are also run under a runtime cel.CostLimit of
// runtimeCostLimit. Cheaper expressions have no loop, so their cost cannot exceed their (small)
// estimate; they are run without cost tracking, which would otherwise take most of the time and
// almost all the allocations of a decision.
const (
	maxRuleCost      = 5000
	trackCostAbove   = 100
	runtimeCostLimit = 2 * maxRuleCost
	maxExprLen       = 4096 // characters of one expression
	maxStringSize    = 1024 // longest input string (TongDun's own parameter limit, code 9003)
	maxReasonIDs     = 16   // reason_ids beyond this are not shown to CEL
)

var (
	objCredit      = types.NewObjectType(typeCredit)
	objTransaction = types.NewObjectType(typeTransaction)
	objSignal      = types.NewObjectType(typeSignal)
	objSignals     = types.NewObjectType(typeSignals)
	velocityType   = types.NewMapType(types.StringType, types.IntType)
	stringList     = types.NewListType(types.StringType)
)

// slots of values cached per decision (each is converted to a CEL value at most once).
const (
	slotEvent = iota
	slotAccount
	slotDevice
	slotIP
	slotCard
	slotAmount
	slotNow
	slotCreditMode
	slotCreditLine
	slotCreditOutstanding
	slotCreditRemaining
	slotCreditOverdue
	slotCreditAPR
	slotCreditValidUntil
	slotTxnAmount
	slotTxnDate
	slotSignals // first of 3*sigFields
)

const (
	sigStatus = iota
	sigScore
	sigResult
	sigMatch
	sigAge
	sigReasonIDs
	sigFields
)

const nSlots = slotSignals + 3*sigFields

// variables are the top-level CEL variables and their types.
var variables = []struct {
	name string
	t    *types.Type
	doc  string
}{
	{"event", types.StringType, "TongDun decision_event"},
	{"account_id", types.StringType, ""},
	{"device", types.StringType, "terminal.black_box"},
	{"ip", types.StringType, ""},
	{"card_hash", types.StringType, "HMAC of the card number"},
	{"amount", types.DoubleType, "rounded to the cent; 0 when absent"},
	{"now", types.TimestampType, ""},
	{"credit", objCredit, ""},
	{"transaction", objTransaction, ""},
	{"signals", objSignals, ""},
	{"velocity", velocityType, "declared counters; an undeclared name is an error, a missing count is 0"},
	{"degraded", types.BoolType, ""},
	{"offline_limit", types.DoubleType, "the policy's offline_limit"},
}

// fieldDef describes one field of a schema object type.
type fieldDef struct {
	t    *types.Type
	slot int // for cached values; -1 for computed ones
	get  func(v *objView) ref.Val
	set  func(v *objView) bool // presence for has(); nil = present when the object is present
}

var schema = map[string]map[string]*fieldDef{
	typeCredit: {
		"present":      {t: types.BoolType, slot: -1, get: func(v *objView) ref.Val { return types.Bool(v.ctx.in.Credit != nil) }, set: always},
		"mode":         {t: types.StringType, slot: slotCreditMode},
		"line":         {t: types.DoubleType, slot: slotCreditLine},
		"outstanding":  {t: types.DoubleType, slot: slotCreditOutstanding},
		"remaining":    {t: types.DoubleType, slot: slotCreditRemaining},
		"overdue_days": {t: types.IntType, slot: slotCreditOverdue},
		"apr":          {t: types.DoubleType, slot: slotCreditAPR},
		"valid_until": {t: types.TimestampType, slot: slotCreditValidUntil, set: func(v *objView) bool {
			return v.ctx.in.Credit != nil && !v.ctx.in.Credit.ValidUntil.IsZero()
		}},
	},
	typeTransaction: {
		"present": {t: types.BoolType, slot: -1, get: func(v *objView) ref.Val { return types.Bool(v.ctx.in.Transaction != nil) }, set: always},
		"amount":  {t: types.DoubleType, slot: slotTxnAmount},
		"date":    {t: types.StringType, slot: slotTxnDate},
	},
	typeSignals: {
		"tongdun":              {t: objSignal, slot: -1, get: func(v *objView) ref.Val { return &v.ctx.sig[0] }, set: always},
		"unionpay_model":       {t: objSignal, slot: -1, get: func(v *objView) ref.Val { return &v.ctx.sig[1] }, set: always},
		"unionpay_transaction": {t: objSignal, slot: -1, get: func(v *objView) ref.Val { return &v.ctx.sig[2] }, set: always},
	},
	typeSignal: {
		"status":      {t: types.StringType, slot: sigStatus, set: always},
		"score":       {t: types.IntType, slot: sigScore},
		"result":      {t: types.StringType, slot: sigResult},
		"match":       {t: types.BoolType, slot: sigMatch},
		"age_seconds": {t: types.DoubleType, slot: sigAge},
		"reason_ids":  {t: stringList, slot: sigReasonIDs},
	},
}

func always(*objView) bool { return true }

// schemaFields holds the precomputed FieldType of each field (built once).
var schemaFields = func() map[string]map[string]*types.FieldType {
	out := make(map[string]map[string]*types.FieldType, len(schema))
	for tn, fields := range schema {
		m := make(map[string]*types.FieldType, len(fields))
		for name, fd := range fields {
			m[name] = fd.fieldType(tn)
		}
		out[tn] = m
	}
	return out
}()

func (fd *fieldDef) fieldType(typeName string) *types.FieldType {
	get := fd.get
	if get == nil {
		slot := fd.slot
		if typeName == typeSignal {
			get = func(v *objView) ref.Val { return v.ctx.get(slotSignals + v.sig*sigFields + slot) }
		} else {
			get = func(v *objView) ref.Val { return v.ctx.get(slot) }
		}
	}
	set := fd.set
	if set == nil {
		switch typeName {
		case typeCredit:
			set = func(v *objView) bool { return v.ctx.in.Credit != nil }
		case typeTransaction:
			set = func(v *objView) bool { return v.ctx.in.Transaction != nil }
		case typeSignal:
			// A signal's values are there when it was had (fresh or stale).
			set = func(v *objView) bool {
				st := v.ctx.signal(v.sig).Status
				return st == StatusFresh || st == StatusStale
			}
		default:
			set = always
		}
	}
	return &types.FieldType{
		Type: fd.t,
		IsSet: func(target any) bool {
			v, ok := target.(*objView)
			return ok && set(v)
		},
		GetFrom: func(target any) (any, error) {
			v, ok := target.(*objView)
			if !ok {
				return nil, fmt.Errorf("unexpected %T for a field of %s", target, typeName)
			}
			return get(v), nil
		},
	}
}

// provider serves the schema types and delegates everything else to the standard registry.
type provider struct {
	*types.Registry
}

func (p *provider) FindStructType(name string) (*types.Type, bool) {
	if _, ok := schema[name]; ok {
		return types.NewTypeTypeWithParam(types.NewObjectType(name)), true
	}
	return p.Registry.FindStructType(name)
}

func (p *provider) FindIdent(name string) (ref.Val, bool) {
	if _, ok := schema[name]; ok {
		return types.NewObjectType(name), true
	}
	return p.Registry.FindIdent(name)
}

func (p *provider) FindStructFieldNames(name string) ([]string, bool) {
	if fields, ok := schema[name]; ok {
		names := make([]string, 0, len(fields))
		for n := range fields {
			names = append(names, n)
		}
		return names, true
	}
	return p.Registry.FindStructFieldNames(name)
}

func (p *provider) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	if fields, ok := schemaFields[name]; ok {
		ft, ok := fields[field]
		return ft, ok
	}
	return p.Registry.FindStructFieldType(name, field)
}

func (p *provider) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := schema[name]; ok {
		return types.NewErr("%s values cannot be constructed in a policy", name)
	}
	return p.Registry.NewValue(name, fields)
}

var (
	envOnce sync.Once
	envVal  *cel.Env
	envErr  error
)

// celEnv returns the CEL environment shared by all policies.
func celEnv() (*cel.Env, error) {
	envOnce.Do(func() {
		reg, err := types.NewRegistry()
		if err != nil {
			envErr = err
			return
		}
		opts := []cel.EnvOption{
			cel.CustomTypeProvider(&provider{Registry: reg}),
			cel.ParserExpressionSizeLimit(maxExprLen),
			cel.ParserRecursionLimit(64),
		}
		for _, v := range variables {
			opts = append(opts, cel.Variable(v.name, v.t))
		}
		opts = append(opts, fleetFunctions...)
		envVal, envErr = cel.NewEnv(opts...)
	})
	return envVal, envErr
}

// estimator tells the cost estimator how large the inputs can be.
type estimator struct {
	velocitySize uint64
}

func (e estimator) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	path := n.Path()
	if len(path) == 0 {
		return nil
	}
	if len(path) == 1 && path[0] == "velocity" {
		return &cost.SizeEstimate{Min: 0, Max: e.velocitySize}
	}
	if path[len(path)-1] == "reason_ids" {
		return &cost.SizeEstimate{Min: 0, Max: maxReasonIDs}
	}
	if t := n.Type(); t != nil {
		switch t.Kind() {
		case types.StringKind:
			return &cost.SizeEstimate{Min: 0, Max: maxStringSize}
		case types.StructKind:
			if fields, ok := schema[t.TypeName()]; ok {
				return &cost.SizeEstimate{Min: 0, Max: uint64(len(fields))}
			}
		}
	}
	return nil
}

func (estimator) EstimateCallCost(function, overloadID string, target *cost.AstNode, args []cost.AstNode) *cost.CallEstimate {
	return nil
}

// interned CEL strings for the values that recur, so that they are not boxed per decision.
var interned = func() map[string]ref.Val {
	m := map[string]ref.Val{}
	for _, s := range []string{"", StatusFresh, StatusStale, StatusMissing, StatusError, Accept, Review, Decline,
		CreditRevolving, CreditSingle} {
		m[s] = types.String(s)
	}
	for _, s := range tongdunEvents {
		m[s] = types.String(s)
	}
	return m
}()

func internStr(s string) ref.Val {
	if v, ok := interned[s]; ok {
		return v
	}
	return types.String(s)
}

// tongdunEvents are TongDun's decision_event values.
var tongdunEvents = []string{"marketing", "marketing_code", "marketing_exchange", "send_gift", "get_coupon",
	"withdraw", "invite", "sms", "browse", "activate", "like", "comment", "favorite"}

// cents rounds a money amount to the cent, so that amounts equal to the cent compare equal.
func cents(x float64) float64 { return math.Round(x*100) / 100 }

// evalCtx is the activation rules are evaluated against. One is taken from the policy's pool per
// decision; values are converted to CEL lazily and cached for the decision.
type evalCtx struct {
	pol     *Policy
	in      *Input
	now     time.Time
	cache   [nSlots]ref.Val
	credit  objView
	txn     objView
	signals objView
	sig     [3]objView
	vel     velocityMap
}

func newEvalCtx(p *Policy) *evalCtx {
	c := &evalCtx{pol: p}
	c.credit = objView{ctx: c, typ: objCredit}
	c.txn = objView{ctx: c, typ: objTransaction}
	c.signals = objView{ctx: c, typ: objSignals}
	for i := range c.sig {
		c.sig[i] = objView{ctx: c, typ: objSignal, sig: i}
	}
	c.vel = velocityMap{ctx: c}
	return c
}

func (c *evalCtx) reset(in *Input) {
	c.in = in
	c.now = in.Now
	if c.now.IsZero() {
		c.now = time.Now()
	}
	clear(c.cache[:])
}

// release drops the references to the input before the context goes back to the pool.
func (c *evalCtx) release() {
	c.in = nil
	clear(c.cache[:])
}

// ResolveName implements interpreter.Activation.
func (c *evalCtx) ResolveName(name string) (any, bool) {
	switch name {
	case "event":
		return c.get(slotEvent), true
	case "account_id":
		return c.get(slotAccount), true
	case "device":
		return c.get(slotDevice), true
	case "ip":
		return c.get(slotIP), true
	case "card_hash":
		return c.get(slotCard), true
	case "amount":
		return c.get(slotAmount), true
	case "now":
		return c.get(slotNow), true
	case "credit":
		return &c.credit, true
	case "transaction":
		return &c.txn, true
	case "signals":
		return &c.signals, true
	case "velocity":
		return &c.vel, true
	case "degraded":
		return types.Bool(c.in.Degraded), true
	case "offline_limit":
		return c.pol.offlineLimitVal, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (c *evalCtx) Parent() interpreter.Activation { return nil }

func (c *evalCtx) signal(i int) *Signal {
	switch i {
	case 0:
		return &c.in.Signals.TongDun
	case 1:
		return &c.in.Signals.UnionPayModel
	default:
		return &c.in.Signals.UnionPayTransaction
	}
}

func (c *evalCtx) get(slot int) ref.Val {
	if v := c.cache[slot]; v != nil {
		return v
	}
	v := c.compute(slot)
	c.cache[slot] = v
	return v
}

var zeroCredit Credit

func (c *evalCtx) compute(slot int) ref.Val {
	in := c.in
	cr := in.Credit
	if cr == nil {
		cr = &zeroCredit
	}
	switch slot {
	case slotEvent:
		return internStr(in.Event)
	case slotAccount:
		return internStr(in.AccountID)
	case slotDevice:
		return internStr(in.Device)
	case slotIP:
		return internStr(in.IP)
	case slotCard:
		return internStr(in.CardHash)
	case slotAmount:
		return types.Double(cents(in.Amount))
	case slotNow:
		return types.Timestamp{Time: c.now}
	case slotCreditMode:
		return internStr(cr.Mode)
	case slotCreditLine:
		return types.Double(cents(cr.Line))
	case slotCreditOutstanding:
		return types.Double(cents(cr.Outstanding))
	case slotCreditRemaining:
		return types.Double(cents(cr.Line - cr.Outstanding))
	case slotCreditOverdue:
		return types.Int(cr.OverdueDays)
	case slotCreditAPR:
		return types.Double(cr.APR)
	case slotCreditValidUntil:
		return types.Timestamp{Time: cr.ValidUntil}
	case slotTxnAmount:
		if in.Transaction == nil {
			return types.Double(0)
		}
		return types.Double(cents(in.Transaction.Amount))
	case slotTxnDate:
		if in.Transaction == nil {
			return internStr("")
		}
		return internStr(in.Transaction.Date)
	}
	i := slot - slotSignals
	s := c.signal(i / sigFields)
	switch i % sigFields {
	case sigStatus:
		if s.Status == "" {
			return internStr(StatusMissing)
		}
		return internStr(s.Status)
	case sigScore:
		return types.Int(s.Score)
	case sigResult:
		return internStr(s.Result)
	case sigMatch:
		return types.Bool(s.Match)
	case sigAge:
		return types.Double(s.AgeSeconds)
	default: // sigReasonIDs
		n := min(len(s.Reasons), maxReasonIDs)
		ids := make([]ref.Val, n)
		for j := range n {
			ids[j] = internStr(s.Reasons[j].ID)
		}
		return types.NewRefValList(types.DefaultTypeAdapter, ids)
	}
}

// objView is the CEL value of credit, transaction, signals and each signal. Its fields are read
// through the schema's FieldType.GetFrom.
type objView struct {
	ctx *evalCtx
	typ *types.Type
	sig int // which signal, for outpost.Signal views
}

func (v *objView) ConvertToNative(reflect.Type) (any, error) {
	return nil, fmt.Errorf("%s cannot be converted to a native value", v.typ.TypeName())
}

func (v *objView) ConvertToType(t ref.Type) ref.Val {
	switch {
	case t == types.TypeType:
		return v.typ
	case t.TypeName() == v.typ.TypeName():
		return v
	}
	return types.NewErr("type conversion error from '%s' to '%s'", v.typ.TypeName(), t.TypeName())
}

func (v *objView) Equal(other ref.Val) ref.Val { return types.Bool(other == ref.Val(v)) }
func (v *objView) Type() ref.Type              { return v.typ }
func (v *objView) Value() any                  { return v }

// The fleet's velocity, as functions of velocity (the parser checks they are called on velocity,
// and velocity.fleet with the name of a counter declared fleet: true).
const (
	fnFleet    = "fleet"
	fnFleetAge = "fleet_age_seconds"
)

var fleetFunctions = []cel.EnvOption{
	cel.Function(fnFleet, cel.MemberOverload("velocity_fleet_string", []*types.Type{velocityType, types.StringType}, types.IntType,
		cel.BinaryBinding(func(lhs, rhs ref.Val) ref.Val {
			m, ok := lhs.(*velocityMap)
			if !ok {
				return types.NewErr("fleet() is a function of velocity")
			}
			name, ok := rhs.(types.String)
			if !ok {
				return types.MaybeNoSuchOverloadErr(rhs)
			}
			if i, declared := m.ctx.pol.velIndex[string(name)]; !declared || !m.ctx.pol.velocity[i].Fleet {
				return types.NewErr("no fleet velocity counter %q", string(name))
			}
			return types.Int(m.ctx.in.FleetVelocity[string(name)])
		}))),
	cel.Function(fnFleetAge, cel.MemberOverload("velocity_fleet_age_seconds", []*types.Type{velocityType}, types.DoubleType,
		cel.UnaryBinding(func(v ref.Val) ref.Val {
			m, ok := v.(*velocityMap)
			if !ok {
				return types.NewErr("fleet_age_seconds() is a function of velocity")
			}
			return types.Double(m.ctx.in.FleetAgeSeconds)
		}))),
}

// velocityMap is the CEL value of `velocity`: a map over the declared counters, a count missing
// from Input.Velocity being 0.
type velocityMap struct {
	ctx *evalCtx
}

var _ traits.Mapper = (*velocityMap)(nil)

func (m *velocityMap) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key), false
	}
	if _, declared := m.ctx.pol.velIndex[string(k)]; !declared {
		return nil, false
	}
	return types.Int(m.ctx.in.Velocity[string(k)]), true
}

func (m *velocityMap) Get(key ref.Val) ref.Val {
	v, found := m.Find(key)
	if !found {
		if v != nil {
			return v
		}
		return types.NewErr("no such velocity counter: %v", key)
	}
	return v
}

func (m *velocityMap) Contains(key ref.Val) ref.Val {
	v, found := m.Find(key)
	if !found && v != nil {
		return v
	}
	return types.Bool(found)
}

func (m *velocityMap) Size() ref.Val { return types.Int(len(m.ctx.pol.velocity)) }

func (m *velocityMap) Iterator() traits.Iterator {
	return &velocityIter{defs: m.ctx.pol.velocity}
}

func (m *velocityMap) ConvertToNative(t reflect.Type) (any, error) {
	if t == reflect.TypeFor[map[string]int64]() {
		out := make(map[string]int64, len(m.ctx.pol.velocity))
		for _, d := range m.ctx.pol.velocity {
			out[d.Name] = m.ctx.in.Velocity[d.Name]
		}
		return out, nil
	}
	return nil, fmt.Errorf("velocity cannot be converted to %v", t)
}

func (m *velocityMap) ConvertToType(t ref.Type) ref.Val {
	switch {
	case t == types.TypeType:
		return types.MapType
	case t.TypeName() == types.MapType.TypeName():
		return m
	}
	return types.NewErr("type conversion error from 'map' to '%s'", t.TypeName())
}

func (m *velocityMap) Equal(other ref.Val) ref.Val {
	o, ok := other.(traits.Mapper)
	if !ok {
		return types.False
	}
	if o.Size() != m.Size() {
		return types.False
	}
	for _, d := range m.ctx.pol.velocity {
		ov, found := o.Find(types.String(d.Name))
		if !found || ov.Equal(types.Int(m.ctx.in.Velocity[d.Name])) != types.True {
			return types.False
		}
	}
	return types.True
}

func (m *velocityMap) Type() ref.Type { return types.MapType }
func (m *velocityMap) Value() any     { return m }

type velocityIter struct {
	defs []VelocityDef
	i    int
}

func (it *velocityIter) HasNext() ref.Val { return types.Bool(it.i < len(it.defs)) }

func (it *velocityIter) Next() ref.Val {
	if it.i >= len(it.defs) {
		return types.NewErr("no more elements")
	}
	it.i++
	return types.String(it.defs[it.i-1].Name)
}

var errIterator = errors.New("iterators cannot be converted")

func (it *velocityIter) ConvertToNative(reflect.Type) (any, error) { return nil, errIterator }
func (it *velocityIter) ConvertToType(ref.Type) ref.Val {
	return types.NewErr("iterators cannot be converted")
}
func (it *velocityIter) Equal(ref.Val) ref.Val { return types.False }
func (it *velocityIter) Type() ref.Type        { return types.IteratorType }
func (it *velocityIter) Value() any            { return it }
