//! Worker modules beside the server: they react to the event outbox (stability detection now;
//! the delivering workers build on it).

pub mod stability;
