// Package s3 is the blob.Store on Amazon S3 (AWS SDK for Go v2): one object
// per key in one bucket, the key used verbatim as the object key.
//
// The client comes from the standard config chain (region, credentials,
// AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3). When a custom endpoint is set (a
// local stand-in such as moto) path-style addressing is used, because
// virtual-hosted names like bucket.127.0.0.1 do not resolve.
//
// The IAM actions it needs are listed in IAMActions (serving) and
// BootstrapIAMActions (EnsureBucket).
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/agentbus/agentbus/platform/blob"
)

// IAMActions are the actions a service using the store needs on the bucket
// (arn:aws:s3:::BUCKET) and its objects (arn:aws:s3:::BUCKET/*).
// s3:ListBucket is needed by DeletePrefix, and also so that a Get of a
// missing key yields NoSuchKey (404) rather than AccessDenied (403).
// DeleteObjects is authorized by s3:DeleteObject.
var IAMActions = []string{
	"s3:GetObject",
	"s3:PutObject",
	"s3:DeleteObject",
	"s3:ListBucket",
}

// BootstrapIAMActions are the actions EnsureBucket needs (HeadBucket is
// authorized by s3:ListBucket). Only the stack bootstrap needs them, not the
// services.
var BootstrapIAMActions = []string{
	"s3:CreateBucket",
	"s3:ListBucket",
}

// API is the subset of the S3 client the store calls; *s3.Client implements
// it, and tests substitute a fake for error paths.
type API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	DeleteObjects(ctx context.Context, in *s3.DeleteObjectsInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectsOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	HeadBucket(ctx context.Context, in *s3.HeadBucketInput, optFns ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
	CreateBucket(ctx context.Context, in *s3.CreateBucketInput, optFns ...func(*s3.Options)) (*s3.CreateBucketOutput, error)
}

var _ API = (*s3.Client)(nil)

// Store is a blob.Store in one S3 bucket. Safe for concurrent use.
type Store struct {
	api    API
	bucket string
	region string
}

var _ blob.Store = (*Store)(nil)

// New creates a store on bucket with a client built from cfg. optFns adjust
// the client (they run after the path-style default, so they can undo it).
// New does no I/O (ctx is kept for constructors that may validate later);
// call EnsureBucket from the stack bootstrap to create the bucket.
func New(_ context.Context, cfg aws.Config, bucket string, optFns ...func(*s3.Options)) (*Store, error) {
	if bucket == "" {
		return nil, errors.New("s3 blob store: empty bucket name")
	}
	fns := append([]func(*s3.Options){usePathStyleForCustomEndpoint}, optFns...)
	client := s3.NewFromConfig(cfg, fns...)
	return &Store{api: client, bucket: bucket, region: client.Options().Region}, nil
}

// usePathStyleForCustomEndpoint turns on path-style addressing when the
// client talks to a custom endpoint (BaseEndpoint is resolved from cfg and
// AWS_ENDPOINT_URL[_S3] before option functions run).
func usePathStyleForCustomEndpoint(o *s3.Options) {
	if o.BaseEndpoint != nil && *o.BaseEndpoint != "" {
		o.UsePathStyle = true
	}
}

// NewFromClient creates a store that borrows api. region is used only by
// EnsureBucket to choose the bucket's location ("" or us-east-1: none).
func NewFromClient(api API, bucket, region string) (*Store, error) {
	if api == nil || bucket == "" {
		return nil, errors.New("s3 blob store: nil client or empty bucket name")
	}
	return &Store{api: api, bucket: bucket, region: region}, nil
}

// Bucket returns the bucket name.
func (s *Store) Bucket() string { return s.bucket }

// EnsureBucket creates the bucket unless it exists and is ours; calling it
// again is harmless.
func (s *Store) EnsureBucket(ctx context.Context) error {
	if _, err := s.api.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)}); err == nil {
		return nil
	} else if !isNoSuchBucket(err) {
		return fmt.Errorf("s3 blob store: head bucket %s: %w", s.bucket, err)
	}
	in := &s3.CreateBucketInput{Bucket: aws.String(s.bucket)}
	// us-east-1 is the default location and must not be named explicitly.
	if s.region != "" && s.region != "us-east-1" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{
			LocationConstraint: types.BucketLocationConstraint(s.region),
		}
	}
	if _, err := s.api.CreateBucket(ctx, in); err != nil {
		var owned *types.BucketAlreadyOwnedByYou
		if errors.As(err, &owned) {
			return nil // created concurrently by another bootstrap
		}
		return fmt.Errorf("s3 blob store: create bucket %s: %w", s.bucket, err)
	}
	return nil
}

// Put stores data under key (one PutObject; S3 makes it atomic).
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	if err := blob.ValidateKey(key); err != nil {
		return err
	}
	_, err := s.api.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/octet-stream"),
	})
	if err != nil {
		return fmt.Errorf("s3 blob store: put %q: %w", key, err)
	}
	return nil
}

// Get returns the object under key, or an error wrapping blob.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := blob.ValidateKey(key); err != nil {
		return nil, err
	}
	out, err := s.api.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		if isNoSuchKey(err) {
			return nil, fmt.Errorf("s3 blob store: get %q: %w (%w)", key, blob.ErrNotFound, err)
		}
		return nil, fmt.Errorf("s3 blob store: get %q: %w", key, err)
	}
	defer out.Body.Close()
	buf := bytes.NewBuffer(make([]byte, 0, max(aws.ToInt64(out.ContentLength), 0)))
	if _, err := io.Copy(buf, out.Body); err != nil {
		return nil, fmt.Errorf("s3 blob store: read %q: %w", key, err)
	}
	return buf.Bytes(), nil
}

// Delete removes key; S3 reports success for a missing key too.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blob.ValidateKey(key); err != nil {
		return err
	}
	if _, err := s.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}); err != nil {
		return fmt.Errorf("s3 blob store: delete %q: %w", key, err)
	}
	return nil
}

// DeletePrefix lists the keys under prefix page by page (up to 1000 a page)
// and deletes each page with one DeleteObjects call. A key that S3 reports as
// not deleted fails the call, naming the first such key.
func (s *Store) DeletePrefix(ctx context.Context, prefix string) error {
	if err := blob.ValidatePrefix(prefix); err != nil {
		return err
	}
	pages := s3.NewListObjectsV2Paginator(s.api, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(prefix),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3 blob store: list %q: %w", prefix, err)
		}
		if len(page.Contents) == 0 {
			continue
		}
		ids := make([]types.ObjectIdentifier, 0, len(page.Contents))
		for _, o := range page.Contents {
			ids = append(ids, types.ObjectIdentifier{Key: o.Key})
		}
		out, err := s.api.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(s.bucket),
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return fmt.Errorf("s3 blob store: delete prefix %q: %w", prefix, err)
		}
		if n := len(out.Errors); n > 0 {
			e := out.Errors[0]
			return fmt.Errorf("s3 blob store: delete prefix %q: %d keys not deleted, first %q: %s: %s",
				prefix, n, aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message))
		}
	}
	return nil
}

// isNoSuchKey reports a missing object: the modeled NoSuchKey error, its
// code on an unmodeled error, or a bare 404 that is not about the bucket. A
// missing bucket is a misconfiguration, not a missing key, so it is not
// mapped to blob.ErrNotFound.
func isNoSuchKey(err error) bool {
	var nsk *types.NoSuchKey
	if errors.As(err, &nsk) {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchKey":
			return true
		case "NoSuchBucket":
			return false
		}
	}
	var resp *smithyhttp.ResponseError
	return errors.As(err, &resp) && resp.HTTPStatusCode() == http.StatusNotFound
}

// isNoSuchBucket reports a missing bucket on HeadBucket: the modeled
// NotFound / NoSuchBucket errors or a bare 404 (HEAD responses carry no body,
// so S3 cannot send an error code with them).
func isNoSuchBucket(err error) bool {
	var nf *types.NotFound
	var nsb *types.NoSuchBucket
	if errors.As(err, &nf) || errors.As(err, &nsb) {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) && (api.ErrorCode() == "NoSuchBucket" || api.ErrorCode() == "NotFound") {
		return true
	}
	var resp *smithyhttp.ResponseError
	return errors.As(err, &resp) && resp.HTTPStatusCode() == http.StatusNotFound
}
