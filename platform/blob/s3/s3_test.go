package s3_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/agentbus/agentbus/internal/testenv"
	"github.com/agentbus/agentbus/platform/blob"
	"github.com/agentbus/agentbus/platform/blob/blobtest"
	blobs3 "github.com/agentbus/agentbus/platform/blob/s3"
)

func motoConfig(t *testing.T) aws.Config {
	t.Helper()
	ep := testenv.AWSEndpoint(t)
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(ep),
	}
}

func uniqueBucket(t *testing.T) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "agentbus-blobtest-" + hex.EncodeToString(b[:])
}

// newMotoStore creates a store on a fresh bucket in moto and removes the
// bucket with its objects when the test ends. cfg comes from motoConfig,
// called once per top-level test: the reachability probe asks moto for its
// whole state, which is slow on a busy shared server.
func newMotoStore(t *testing.T, cfg aws.Config) *blobs3.Store {
	t.Helper()
	bucket := uniqueBucket(t)
	s, err := blobs3.New(t.Context(), cfg, bucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(t.Context()); err != nil {
		t.Fatalf("EnsureBucket: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		c := awss3.NewFromConfig(cfg, func(o *awss3.Options) { o.UsePathStyle = true })
		pages := awss3.NewListObjectsV2Paginator(c, &awss3.ListObjectsV2Input{Bucket: aws.String(bucket)})
		for pages.HasMorePages() {
			p, err := pages.NextPage(ctx)
			if err != nil {
				t.Logf("cleanup list %s: %v", bucket, err)
				return
			}
			for _, o := range p.Contents {
				_, _ = c.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(bucket), Key: o.Key})
			}
		}
		if _, err := c.DeleteBucket(ctx, &awss3.DeleteBucketInput{Bucket: aws.String(bucket)}); err != nil {
			t.Logf("cleanup delete bucket %s: %v", bucket, err)
		}
	})
	return s
}

func TestConformanceMoto(t *testing.T) {
	t.Parallel()
	cfg := motoConfig(t)
	blobtest.Run(t, func(t *testing.T) blob.Store { return newMotoStore(t, cfg) })
}

func TestEnsureBucketIdempotentMoto(t *testing.T) {
	t.Parallel()
	s := newMotoStore(t, motoConfig(t))
	for range 2 {
		if err := s.EnsureBucket(t.Context()); err != nil {
			t.Fatalf("EnsureBucket again: %v", err)
		}
	}
	if err := s.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// A second bootstrap must not lose objects.
	if err := s.EnsureBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(t.Context(), "k"); err != nil || string(got) != "v" {
		t.Fatalf("Get after EnsureBucket = %q, %v", got, err)
	}
}

func TestMissingBucketIsNotErrNotFoundMoto(t *testing.T) {
	t.Parallel()
	s, err := blobs3.New(t.Context(), motoConfig(t), uniqueBucket(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Get(t.Context(), "k")
	if err == nil || errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Get on a missing bucket = %v, want a non-ErrNotFound error", err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	if _, err := blobs3.New(t.Context(), aws.Config{Region: "us-east-1"}, ""); err == nil {
		t.Error("New with empty bucket succeeded")
	}
	if _, err := blobs3.NewFromClient(nil, "b", ""); err == nil {
		t.Error("NewFromClient(nil) succeeded")
	}
}

// TestIAMActions: every SDK operation the store can call (every method of
// its API interface) is authorized by the declared lists; the deploy issue
// builds least-privilege roles from them.
func TestIAMActions(t *testing.T) {
	t.Parallel()
	// The action that authorizes each operation (AWS S3 API reference).
	authorizedBy := map[string]string{
		"PutObject":     "s3:PutObject",
		"GetObject":     "s3:GetObject",
		"DeleteObject":  "s3:DeleteObject",
		"DeleteObjects": "s3:DeleteObject",
		"ListObjectsV2": "s3:ListBucket",
		"HeadBucket":    "s3:ListBucket",
		"CreateBucket":  "s3:CreateBucket",
	}
	bootstrapOnly := map[string]bool{"HeadBucket": true, "CreateBucket": true}
	api := reflect.TypeFor[blobs3.API]()
	for i := range api.NumMethod() {
		op := api.Method(i).Name
		action, ok := authorizedBy[op]
		if !ok {
			t.Errorf("API method %s has no known IAM action; add it here and to the lists", op)
			continue
		}
		list := blobs3.IAMActions
		if bootstrapOnly[op] {
			list = blobs3.BootstrapIAMActions
		}
		if !slices.Contains(list, action) {
			t.Errorf("%s needs %s, missing from its list %v", op, action, list)
		}
	}
	// Missing keys must answer 404, not 403: that takes s3:ListBucket.
	if !slices.Contains(blobs3.IAMActions, "s3:ListBucket") {
		t.Error("IAMActions lacks s3:ListBucket")
	}
	if slices.Contains(blobs3.IAMActions, "s3:CreateBucket") {
		t.Error("services must not get s3:CreateBucket")
	}
}

// fakeAPI is a function-field fake of blobs3.API for error paths moto cannot
// produce on demand. An unset function fails the test when called.
type fakeAPI struct {
	t             *testing.T
	putObject     func(*awss3.PutObjectInput) (*awss3.PutObjectOutput, error)
	getObject     func(*awss3.GetObjectInput) (*awss3.GetObjectOutput, error)
	deleteObject  func(*awss3.DeleteObjectInput) (*awss3.DeleteObjectOutput, error)
	deleteObjects func(*awss3.DeleteObjectsInput) (*awss3.DeleteObjectsOutput, error)
	listObjectsV2 func(*awss3.ListObjectsV2Input) (*awss3.ListObjectsV2Output, error)
	headBucket    func(*awss3.HeadBucketInput) (*awss3.HeadBucketOutput, error)
	createBucket  func(*awss3.CreateBucketInput) (*awss3.CreateBucketOutput, error)
}

var _ blobs3.API = (*fakeAPI)(nil)

func unexpected[T any](t *testing.T, name string) (T, error) {
	t.Helper()
	t.Errorf("unexpected call to %s", name)
	var zero T
	return zero, errors.New("unexpected call")
}

func (f *fakeAPI) PutObject(_ context.Context, in *awss3.PutObjectInput, _ ...func(*awss3.Options)) (*awss3.PutObjectOutput, error) {
	if f.putObject == nil {
		return unexpected[*awss3.PutObjectOutput](f.t, "PutObject")
	}
	return f.putObject(in)
}

func (f *fakeAPI) GetObject(_ context.Context, in *awss3.GetObjectInput, _ ...func(*awss3.Options)) (*awss3.GetObjectOutput, error) {
	if f.getObject == nil {
		return unexpected[*awss3.GetObjectOutput](f.t, "GetObject")
	}
	return f.getObject(in)
}

func (f *fakeAPI) DeleteObject(_ context.Context, in *awss3.DeleteObjectInput, _ ...func(*awss3.Options)) (*awss3.DeleteObjectOutput, error) {
	if f.deleteObject == nil {
		return unexpected[*awss3.DeleteObjectOutput](f.t, "DeleteObject")
	}
	return f.deleteObject(in)
}

func (f *fakeAPI) DeleteObjects(_ context.Context, in *awss3.DeleteObjectsInput, _ ...func(*awss3.Options)) (*awss3.DeleteObjectsOutput, error) {
	if f.deleteObjects == nil {
		return unexpected[*awss3.DeleteObjectsOutput](f.t, "DeleteObjects")
	}
	return f.deleteObjects(in)
}

func (f *fakeAPI) ListObjectsV2(_ context.Context, in *awss3.ListObjectsV2Input, _ ...func(*awss3.Options)) (*awss3.ListObjectsV2Output, error) {
	if f.listObjectsV2 == nil {
		return unexpected[*awss3.ListObjectsV2Output](f.t, "ListObjectsV2")
	}
	return f.listObjectsV2(in)
}

func (f *fakeAPI) HeadBucket(_ context.Context, in *awss3.HeadBucketInput, _ ...func(*awss3.Options)) (*awss3.HeadBucketOutput, error) {
	if f.headBucket == nil {
		return unexpected[*awss3.HeadBucketOutput](f.t, "HeadBucket")
	}
	return f.headBucket(in)
}

func (f *fakeAPI) CreateBucket(_ context.Context, in *awss3.CreateBucketInput, _ ...func(*awss3.Options)) (*awss3.CreateBucketOutput, error) {
	if f.createBucket == nil {
		return unexpected[*awss3.CreateBucketOutput](f.t, "CreateBucket")
	}
	return f.createBucket(in)
}

func http404() error {
	return &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusNotFound}},
		Err:      errors.New("404 without a body"),
	}
}

func TestGetErrorMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		err      error
		notFound bool
	}{
		{"modeled NoSuchKey", &types.NoSuchKey{}, true},
		{"NoSuchKey code", &smithy.GenericAPIError{Code: "NoSuchKey"}, true},
		{"bare 404", http404(), true},
		{"NoSuchBucket", &types.NoSuchBucket{}, false},
		{"NoSuchBucket code", &smithy.GenericAPIError{Code: "NoSuchBucket"}, false},
		{"AccessDenied", &smithy.GenericAPIError{Code: "AccessDenied"}, false},
		{"throttled", &smithy.GenericAPIError{Code: "SlowDown"}, false},
		{"canceled", context.Canceled, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeAPI{t: t, getObject: func(in *awss3.GetObjectInput) (*awss3.GetObjectOutput, error) {
				if aws.ToString(in.Bucket) != "b" || aws.ToString(in.Key) != "k/1" {
					t.Errorf("GetObject(%s, %s)", aws.ToString(in.Bucket), aws.ToString(in.Key))
				}
				return nil, tt.err
			}}
			s, _ := blobs3.NewFromClient(f, "b", "us-east-1")
			_, err := s.Get(t.Context(), "k/1")
			if got := errors.Is(err, blob.ErrNotFound); got != tt.notFound {
				t.Fatalf("Get error %v: errors.Is(ErrNotFound) = %v, want %v", err, got, tt.notFound)
			}
			// The SDK's error stays inspectable.
			if !errors.Is(err, tt.err) {
				t.Errorf("Get error %v does not wrap %v", err, tt.err)
			}
		})
	}
}

func TestInvalidKeyMakesNoCall(t *testing.T) {
	t.Parallel()
	s, _ := blobs3.NewFromClient(&fakeAPI{t: t}, "b", "")
	ctx := t.Context()
	for _, err := range []error{
		s.Put(ctx, "../x", nil),
		func() error { _, err := s.Get(ctx, "/x"); return err }(),
		s.Delete(ctx, "a//b"),
		s.DeletePrefix(ctx, ""),
	} {
		if !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("got %v, want ErrInvalidKey", err)
		}
	}
}

func TestPutError(t *testing.T) {
	t.Parallel()
	boom := &smithy.GenericAPIError{Code: "InternalError"}
	f := &fakeAPI{t: t, putObject: func(in *awss3.PutObjectInput) (*awss3.PutObjectOutput, error) {
		if aws.ToInt64(in.ContentLength) != 3 {
			t.Errorf("ContentLength = %d, want 3", aws.ToInt64(in.ContentLength))
		}
		return nil, boom
	}}
	s, _ := blobs3.NewFromClient(f, "b", "")
	if err := s.Put(t.Context(), "k", []byte("abc")); !errors.Is(err, boom) || errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Put = %v, want it to wrap %v", err, boom)
	}
}

func TestDeletePrefixPagesAndPartialFailure(t *testing.T) {
	t.Parallel()
	pages := map[string]*awss3.ListObjectsV2Output{
		"": {
			Contents:              []types.Object{{Key: aws.String("p/1")}, {Key: aws.String("p/2")}},
			IsTruncated:           aws.Bool(true),
			NextContinuationToken: aws.String("t2"),
		},
		"t2": {Contents: []types.Object{{Key: aws.String("p/3")}}, IsTruncated: aws.Bool(false)},
	}
	list := func(in *awss3.ListObjectsV2Input) (*awss3.ListObjectsV2Output, error) {
		if aws.ToString(in.Prefix) != "p/" {
			t.Errorf("list prefix %q", aws.ToString(in.Prefix))
		}
		return pages[aws.ToString(in.ContinuationToken)], nil
	}
	t.Run("all deleted", func(t *testing.T) {
		t.Parallel()
		var deleted []string
		f := &fakeAPI{t: t, listObjectsV2: list, deleteObjects: func(in *awss3.DeleteObjectsInput) (*awss3.DeleteObjectsOutput, error) {
			for _, o := range in.Delete.Objects {
				deleted = append(deleted, aws.ToString(o.Key))
			}
			return &awss3.DeleteObjectsOutput{}, nil
		}}
		s, _ := blobs3.NewFromClient(f, "b", "")
		if err := s.DeletePrefix(t.Context(), "p/"); err != nil {
			t.Fatal(err)
		}
		if strings.Join(deleted, ",") != "p/1,p/2,p/3" {
			t.Errorf("deleted %v, want p/1,p/2,p/3 across two pages", deleted)
		}
	})
	t.Run("partial failure", func(t *testing.T) {
		t.Parallel()
		// DeleteObjects answers 200 with per-key errors; they must not be lost.
		f := &fakeAPI{t: t, listObjectsV2: list, deleteObjects: func(in *awss3.DeleteObjectsInput) (*awss3.DeleteObjectsOutput, error) {
			return &awss3.DeleteObjectsOutput{Errors: []types.Error{{Key: aws.String("p/2"), Code: aws.String("AccessDenied"), Message: aws.String("denied")}}}, nil
		}}
		s, _ := blobs3.NewFromClient(f, "b", "")
		err := s.DeletePrefix(t.Context(), "p/")
		if err == nil || !strings.Contains(err.Error(), `"p/2"`) || !strings.Contains(err.Error(), "AccessDenied") {
			t.Fatalf("DeletePrefix = %v, want an error naming p/2 and AccessDenied", err)
		}
	})
	t.Run("list error", func(t *testing.T) {
		t.Parallel()
		boom := &smithy.GenericAPIError{Code: "AccessDenied"}
		f := &fakeAPI{t: t, listObjectsV2: func(*awss3.ListObjectsV2Input) (*awss3.ListObjectsV2Output, error) { return nil, boom }}
		s, _ := blobs3.NewFromClient(f, "b", "")
		if err := s.DeletePrefix(t.Context(), "p/"); !errors.Is(err, boom) {
			t.Fatalf("DeletePrefix = %v, want it to wrap %v", err, boom)
		}
	})
}

func TestEnsureBucket(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		region     string
		headErr    error
		createErr  error
		wantCreate bool
		wantLoc    string
		wantErr    bool
	}{
		{name: "exists", region: "us-east-1"},
		{name: "missing us-east-1", region: "us-east-1", headErr: http404(), wantCreate: true},
		{name: "missing eu-west-1", region: "eu-west-1", headErr: &types.NotFound{}, wantCreate: true, wantLoc: "eu-west-1"},
		{name: "raced", region: "us-east-1", headErr: http404(), createErr: &types.BucketAlreadyOwnedByYou{}, wantCreate: true},
		{name: "taken by another account", region: "us-east-1", headErr: http404(), createErr: &types.BucketAlreadyExists{}, wantCreate: true, wantErr: true},
		{name: "head forbidden", region: "us-east-1", headErr: &smithy.GenericAPIError{Code: "Forbidden"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			created := false
			f := &fakeAPI{t: t,
				headBucket: func(*awss3.HeadBucketInput) (*awss3.HeadBucketOutput, error) {
					return &awss3.HeadBucketOutput{}, tt.headErr
				},
			}
			if tt.wantCreate {
				f.createBucket = func(in *awss3.CreateBucketInput) (*awss3.CreateBucketOutput, error) {
					created = true
					loc := ""
					if in.CreateBucketConfiguration != nil {
						loc = string(in.CreateBucketConfiguration.LocationConstraint)
					}
					if loc != tt.wantLoc {
						t.Errorf("LocationConstraint = %q, want %q", loc, tt.wantLoc)
					}
					return &awss3.CreateBucketOutput{}, tt.createErr
				}
			}
			s, _ := blobs3.NewFromClient(f, "b", tt.region)
			err := s.EnsureBucket(t.Context())
			if (err != nil) != tt.wantErr {
				t.Fatalf("EnsureBucket = %v, wantErr %v", err, tt.wantErr)
			}
			if created != tt.wantCreate {
				t.Errorf("created = %v, want %v", created, tt.wantCreate)
			}
		})
	}
}
