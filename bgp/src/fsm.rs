//! Sans-IO session FSM (RFC 4271 §8). (To be implemented.)
