//! The rich gRPC error model Fabric's Gateway uses: a failed call carries, in its
//! `grpc-status-details-bin` trailer, an encoded `google.rpc.Status` whose details are
//! `gateway.ErrorDetail`s, one per organisation or node that failed (its address, MSP id and
//! message). Fabric's Gateway SDKs show these to the caller.

use prost::Message;

use crate::pb::gateway::ErrorDetail;

/// The type URL of a packed `gateway.ErrorDetail`.
pub const ERROR_DETAIL_TYPE_URL: &str = "type.googleapis.com/gateway.ErrorDetail";

/// `google.rpc.Status`: the code, the message and the packed details.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}

/// The bytes of the status-details trailer for a call that failed with `code` and `message`
/// because of `details`.
pub fn encode_error_details(code: i32, message: &str, details: &[ErrorDetail]) -> Vec<u8> {
    RpcStatus {
        code,
        message: message.to_owned(),
        details: details
            .iter()
            .map(|d| prost_types::Any {
                type_url: ERROR_DETAIL_TYPE_URL.to_owned(),
                value: d.encode_to_vec(),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// The `gateway.ErrorDetail`s in a status-details trailer; details of other types, and a trailer
/// that does not decode, yield nothing.
pub fn decode_error_details(bytes: &[u8]) -> Vec<ErrorDetail> {
    let Ok(status) = RpcStatus::decode(bytes) else {
        return Vec::new();
    };
    status
        .details
        .iter()
        .filter(|a| a.type_url == ERROR_DETAIL_TYPE_URL)
        .filter_map(|a| ErrorDetail::decode(a.value.as_slice()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details_round_trip_and_foreign_details_are_skipped() {
        let details = vec![
            ErrorDetail {
                address: "peer0.brand1:7051".into(),
                msp_id: "Brand1MSP".into(),
                message: "chaincode response 500, out of stock".into(),
            },
            ErrorDetail {
                address: "peer0.brand2:7051".into(),
                msp_id: "Brand2MSP".into(),
                message: "unavailable".into(),
            },
        ];
        let mut bytes = encode_error_details(10, "failed to endorse", &details);
        assert_eq!(decode_error_details(&bytes), details);
        let mut status = RpcStatus::decode(bytes.as_slice()).unwrap();
        assert_eq!(
            (status.code, status.message.as_str()),
            (10, "failed to endorse")
        );
        status.details.push(prost_types::Any {
            type_url: "type.googleapis.com/google.rpc.DebugInfo".into(),
            value: vec![1, 2, 3],
        });
        bytes = status.encode_to_vec();
        assert_eq!(decode_error_details(&bytes), details);
        assert!(decode_error_details(&[0xff, 0xff]).is_empty());
    }
}
