// Package stepfunctions runs sagas on AWS Step Functions.
package stepfunctions

import _ "github.com/aws/aws-sdk-go-v2/service/sfn"
