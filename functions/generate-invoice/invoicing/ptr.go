package invoicing

func ptr[T any](v T) *T { return &v }
