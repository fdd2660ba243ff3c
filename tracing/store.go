package tracing

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	apiperf "github.com/api-perf/api-perf"
)

// scope names the instrumentation that makes the store spans.
const scope = "github.com/api-perf/api-perf/tracing"

// Database describes the database behind a store for the spans' semantic
// attributes.
type Database struct {
	// System is the database's kind: "mysql" or "sqlite".
	System string
	// Name is the schema (db.namespace); empty leaves it out.
	Name string
}

// Stores wraps a product store and an order store so that every call is a
// client span (db.system.name, db.operation.name, db.collection.name) under
// the caller's span. cmd stacks them only when tracing is on.
type Stores struct {
	products apiperf.ProductStore
	orders   apiperf.OrderStore
	tracer   trace.Tracer
	attrs    []attribute.KeyValue
}

var (
	_ apiperf.ProductStore = (*Stores)(nil)
	_ apiperf.OrderStore   = (*Stores)(nil)
)

// NewStores traces products and orders (either may be nil if unused) under tp.
func NewStores(products apiperf.ProductStore, orders apiperf.OrderStore, tp trace.TracerProvider, db Database) *Stores {
	attrs := []attribute.KeyValue{
		semconv.DBSystemNameKey.String(db.System),
		// The name before semantic conventions 1.26; many backends still
		// key their database views on it, as rueidisotel's spans do.
		attribute.String("db.system", db.System),
	}
	if db.Name != "" {
		attrs = append(attrs, semconv.DBNamespace(db.Name))
	}
	return &Stores{products: products, orders: orders, tracer: tp.Tracer(scope), attrs: attrs}
}

// op is one store method: the span's name and the SQL it mostly runs.
type op struct {
	name        string
	operation   string // db.operation.name
	collection  string // db.collection.name
	storeMethod string
}

var (
	opCreateProduct  = op{"INSERT products", "INSERT", "products", "CreateProduct"}
	opProduct        = op{"SELECT products", "SELECT", "products", "Product"}
	opProducts       = op{"SELECT products", "SELECT", "products", "Products"}
	opUpdateProduct  = op{"UPDATE products", "UPDATE", "products", "UpdateProduct"}
	opDeleteProduct  = op{"DELETE products", "DELETE", "products", "DeleteProduct"}
	opPlaceOrders    = op{"INSERT orders", "INSERT", "orders", "PlaceOrders"}
	opOrder          = op{"SELECT orders", "SELECT", "orders", "Order"}
	opOrders         = op{"SELECT orders", "SELECT", "orders", "Orders"}
	opSetOrderStatus = op{"UPDATE orders", "UPDATE", "orders", "SetOrderStatus"}
	opDeleteOrder    = op{"DELETE orders", "DELETE", "orders", "DeleteOrder"}
)

func (s *Stores) start(ctx context.Context, o op) (context.Context, trace.Span) {
	attrs := make([]attribute.KeyValue, 0, len(s.attrs)+3)
	attrs = append(attrs, s.attrs...)
	attrs = append(attrs, semconv.DBOperationName(o.operation), semconv.DBCollectionName(o.collection),
		attribute.String("code.function.name", "storage."+o.storeMethod))
	return s.tracer.Start(ctx, o.name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// end records err on span: only failures of the database itself (codes
// EUNAVAILABLE and EINTERNAL) mark the span as an error; a missing row or
// a stock conflict is the store answering.
func end(span trace.Span, err error) {
	if err != nil {
		if failed(err) {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		} else {
			span.SetAttributes(attribute.String("error.type", apiperf.ErrorCode(err)))
		}
	}
	span.End()
}

// failed reports whether err is a failure of the database itself.
func failed(err error) bool {
	code := apiperf.ErrorCode(err)
	return code == apiperf.EUNAVAILABLE || code == apiperf.EINTERNAL
}

func (s *Stores) CreateProduct(ctx context.Context, in apiperf.ProductInput) (*apiperf.Product, error) {
	ctx, span := s.start(ctx, opCreateProduct)
	p, err := s.products.CreateProduct(ctx, in)
	end(span, err)
	return p, err
}

func (s *Stores) Product(ctx context.Context, id int64) (*apiperf.Product, error) {
	ctx, span := s.start(ctx, opProduct)
	p, err := s.products.Product(ctx, id)
	end(span, err)
	return p, err
}

func (s *Stores) Products(ctx context.Context, page apiperf.Page) ([]apiperf.Product, error) {
	ctx, span := s.start(ctx, opProducts)
	p, err := s.products.Products(ctx, page)
	end(span, err)
	return p, err
}

func (s *Stores) UpdateProduct(ctx context.Context, id int64, patch apiperf.ProductPatch, ifVersion int64) (*apiperf.Product, error) {
	ctx, span := s.start(ctx, opUpdateProduct)
	p, err := s.products.UpdateProduct(ctx, id, patch, ifVersion)
	end(span, err)
	return p, err
}

func (s *Stores) DeleteProduct(ctx context.Context, id int64) error {
	ctx, span := s.start(ctx, opDeleteProduct)
	err := s.products.DeleteProduct(ctx, id)
	end(span, err)
	return err
}

// PlaceOrders is one span for the batch's transaction, with the batch size;
// its error is the first placement's failure of the database itself.
func (s *Stores) PlaceOrders(ctx context.Context, batch []*apiperf.OrderPlacement) {
	ctx, span := s.start(ctx, opPlaceOrders)
	span.SetAttributes(attribute.Int("db.operation.batch.size", len(batch)))
	s.orders.PlaceOrders(ctx, batch)
	var err error
	for _, p := range batch {
		if p.Err != nil && failed(p.Err) {
			err = p.Err
			break
		}
	}
	end(span, err)
}

func (s *Stores) Order(ctx context.Context, id int64) (*apiperf.Order, error) {
	ctx, span := s.start(ctx, opOrder)
	o, err := s.orders.Order(ctx, id)
	end(span, err)
	return o, err
}

func (s *Stores) Orders(ctx context.Context, f apiperf.OrderFilter) ([]apiperf.Order, error) {
	ctx, span := s.start(ctx, opOrders)
	o, err := s.orders.Orders(ctx, f)
	end(span, err)
	return o, err
}

func (s *Stores) SetOrderStatus(ctx context.Context, id int64, status apiperf.OrderStatus) (*apiperf.Order, error) {
	ctx, span := s.start(ctx, opSetOrderStatus)
	o, err := s.orders.SetOrderStatus(ctx, id, status)
	end(span, err)
	return o, err
}

func (s *Stores) DeleteOrder(ctx context.Context, id int64) (*apiperf.Order, error) {
	ctx, span := s.start(ctx, opDeleteOrder)
	o, err := s.orders.DeleteOrder(ctx, id)
	end(span, err)
	return o, err
}
