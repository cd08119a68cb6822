package render

// ForgetTemplates forgets the money templates learnt (money.go), for tests
// that learn them anew.
func ForgetTemplates() {
	templates.Clear()
	learnt.Store(0)
}
