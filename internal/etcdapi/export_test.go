package etcdapi

// LearnerRefusals is the number of learner refusals c routed around.
func LearnerRefusals(c *Client) int64 { return c.refusals.Load() }
