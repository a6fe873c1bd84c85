//! The Arrow Flight SQL front end, on its own port, for ADBC, JDBC and DBeaver: the same
//! keys, allow-lists, guard and limits as HTTP, through the same `Service`.
//!
//! A key comes as `authorization: Bearer KEY` on every call, or as the password of the
//! handshake's Basic credentials (the handshake answers with the bearer token to send
//! after it). Statements run as `CommandStatementQuery`; parameters go through a prepared
//! statement whose handle is the query itself (stateless, so any replica behind a load
//! balancer can answer): binding a row of parameters (`DoPut`) returns a new handle that
//! carries them, positionally (`$1`, `$2`, … by column order). Refusals map to gRPC
//! codes: bad SQL `INVALID_ARGUMENT`, no key `UNAUTHENTICATED`, past the time limit
//! `DEADLINE_EXCEEDED`, past the statement, memory, row or answer-bytes limit or the key's
//! share of the slots `RESOURCE_EXHAUSTED`, busy `UNAVAILABLE`. The schema GetFlightInfo
//! announces is the one DoGet streams (nullability included). Basic credentials are
//! taken with or without base64's padding.
//!
//! For tools that browse (DBeaver, ADBC's `get_objects`): GetSqlInfo (the server, read
//! only), GetCatalogs and GetDbSchemas (none: tables are named bare, as in the SQL),
//! GetTableTypes (`TABLE`) and GetTables (the key's tables, with their Arrow schemas).

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use axum::http::StatusCode;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::arrow::record_batch::RecordBatch;
use futures::{Stream, TryStreamExt};
use prost::Message;
use serde::{Deserialize, Serialize};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status, Streaming};

use super::Service;
use super::engine::Query;
use super::keys::Key;
use super::refusal::Refusal;
use crate::error::{Error, Result};

/// Serves Flight SQL on `listener` until `stop` resolves.
pub async fn serve(
    service: Arc<Service>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    tonic::transport::Server::builder()
        .add_service(FlightServiceServer::new(Flight { service }))
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), stop)
        .await
        .map_err(|e| Error::external(format!("serving Flight SQL: {e}")))
}

struct Flight {
    service: Arc<Service>,
}

/// The catalog and schema of every table: none (tables are named bare in the SQL).
const NO_NAME: &str = "";
/// The kind of every table.
const TABLE_TYPE: &str = "TABLE";

/// A refusal as a gRPC status.
fn status(refusal: Refusal) -> Status {
    let message = refusal.message;
    match refusal.status {
        StatusCode::BAD_REQUEST | StatusCode::NOT_ACCEPTABLE => Status::invalid_argument(message),
        StatusCode::UNAUTHORIZED => Status::unauthenticated(message),
        StatusCode::NOT_FOUND => Status::not_found(message),
        StatusCode::REQUEST_TIMEOUT => Status::deadline_exceeded(message),
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => {
            Status::resource_exhausted(message)
        }
        StatusCode::SERVICE_UNAVAILABLE => Status::unavailable(message),
        _ => Status::internal(message),
    }
}

/// A ticket: the query, and where its rows are read from when the engine had to run it
/// to tell its columns.
#[derive(Serialize, Deserialize)]
struct Fetch {
    #[serde(flatten)]
    query: Query,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
}

/// A statement handle or ticket as JSON.
fn handle(value: &impl Serialize) -> Result<Vec<u8>, Status> {
    serde_json::to_vec(value).map_err(|e| Status::internal(format!("encoding a handle: {e}")))
}

fn read_handle<T: serde::de::DeserializeOwned>(handle: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(handle)
        .map_err(|_| Status::invalid_argument("not a statement handle or ticket this server gave"))
}

fn schema_bytes(schema: &SchemaRef) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: datafusion::arrow::error::ArrowError| {
            Status::internal(format!("encoding a schema: {e}"))
        })?;
    Ok(bytes)
}

impl Flight {
    fn key(&self, metadata: &MetadataMap) -> Result<&Key, Status> {
        let authorization = metadata.get("authorization").and_then(|v| v.to_str().ok());
        let api_key = metadata.get("x-api-key").and_then(|v| v.to_str().ok());
        self.service.key(authorization, api_key).map_err(status)
    }

    /// Where the rows of `query` are fetched: this server, with the query as the ticket.
    async fn info(
        &self,
        key: &Key,
        query: &Query,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let (schema, cursor) = self.service.schema(key, query).await.map_err(status)?;
        let fetch = Fetch {
            query: query.clone(),
            cursor,
        };
        let ticket = TicketStatementQuery {
            statement_handle: handle(&fetch)?.into(),
        };
        let endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("encoding a schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }
}

/// Where a metadata command's rows are fetched: this server, with the command as the
/// ticket, in the command's result schema.
fn metadata_info(
    command: &impl ProstMessageExt,
    schema: &datafusion::arrow::datatypes::Schema,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let ticket = Ticket::new(command.as_any().encode_to_vec());
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("encoding a schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// A metadata command's rows as a DoGet stream.
fn metadata_rows(
    batch: Result<RecordBatch, FlightError>,
) -> Result<Response<<Flight as FlightService>::DoGetStream>, Status> {
    let batch = batch.map_err(|e| Status::internal(format!("building metadata: {e}")))?;
    let data = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::iter([Ok(batch)]))
        .map_err(Status::from);
    Ok(Response::new(Box::pin(data)))
}

/// What GetSqlInfo tells of this server.
fn sql_info() -> Result<SqlInfoData, Status> {
    let mut builder = SqlInfoDataBuilder::new();
    builder.append(SqlInfo::FlightSqlServerName, "sluice");
    builder.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    builder.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    builder.append(SqlInfo::FlightSqlServerReadOnly, true);
    builder
        .build()
        .map_err(|e| Status::internal(format!("building the server's info: {e}")))
}

/// The one row of bound parameters, as the positional list the engines take.
async fn bound_parameters(stream: PeekableFlightDataStream) -> Result<serde_json::Value, Status> {
    let batches: Vec<RecordBatch> =
        FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from))
            .try_collect()
            .await
            .map_err(|e| Status::invalid_argument(format!("reading the parameters: {e}")))?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let Some(batch) = batches.into_iter().find(|b| b.num_rows() > 0) else {
        return Ok(serde_json::Value::Array(Vec::new()));
    };
    if rows > 1 {
        return Err(Status::invalid_argument(format!(
            "bind one row of parameters per execution, not {rows}"
        )));
    }
    let objects = super::format::json_rows(std::slice::from_ref(&batch))
        .map_err(|e| Status::invalid_argument(format!("reading the parameters: {e}")))?;
    let row = objects.into_iter().next().unwrap_or_default();
    Ok(batch
        .schema()
        .fields()
        .iter()
        .map(|f| row.get(f.name()).cloned().unwrap_or_default())
        .collect())
}

type Replies<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl FlightSqlService for Flight {
    type FlightService = Flight;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Replies<HandshakeResponse>>, Status> {
        let key = self.key(request.metadata())?;
        tracing::info!(key = %key.name, "Flight SQL handshake");
        let value = |name: &str| request.metadata().get(name).and_then(|v| v.to_str().ok());
        let token = super::keys::presented(value("authorization"), value("x-api-key"));
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        let mut response: Response<Replies<HandshakeResponse>> =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        if let Some(token) = token
            && let Ok(value) = MetadataValue::try_from(format!("Bearer {token}"))
        {
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let key = self.key(request.metadata())?;
        let query = Query {
            sql: query.query,
            params: None,
            as_of: None,
        };
        self.info(key, &query, request.into_inner()).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let key = self.key(request.metadata())?;
        let query: Query = read_handle(&command.prepared_statement_handle)?;
        self.info(key, &query, request.into_inner()).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let key = self.key(request.metadata())?;
        let fetch: Fetch = read_handle(&ticket.statement_handle)?;
        let (schema, rows) = self
            .service
            .stream(key, &fetch.query, fetch.cursor.as_deref())
            .await
            .map_err(status)?;
        let rows = rows.map_err(|refusal| FlightError::Tonic(Box::new(status(refusal))));
        let data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(rows)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(data)))
    }

    async fn do_action_create_prepared_statement(
        &self,
        command: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let key = self.key(request.metadata())?;
        let query = Query {
            sql: command.query,
            params: None,
            as_of: None,
        };
        // A query with placeholders may not plan until its parameters are bound, and an
        // engine that cannot plan would have to run it: the columns are then told by
        // GetFlightInfo.
        let dataset_schema = if self.service.plans() {
            match self.service.schema(key, &query).await {
                Ok((schema, _)) => schema_bytes(&schema)?,
                Err(refusal) if refusal.code != "refused" && query.sql.contains('$') => {
                    bytes::Bytes::new()
                }
                Err(refusal) => return Err(status(refusal)),
            }
        } else {
            bytes::Bytes::new()
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle(&query)?.into(),
            dataset_schema,
            parameter_schema: bytes::Bytes::new(),
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.key(request.metadata())?;
        let mut query: Query = read_handle(&command.prepared_statement_handle)?;
        query.params = Some(bound_parameters(request.into_inner()).await?);
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle(&query)?.into()),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _command: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // Handles hold no state on the server: nothing to free.
        self.key(request.metadata()).map(|_| ())
    }

    async fn get_flight_info_sql_info(
        &self,
        command: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.key(request.metadata())?;
        let schema = command.clone().into_builder(&sql_info()?).schema();
        metadata_info(&command, &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        command: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.key(request.metadata())?;
        metadata_rows(command.into_builder(&sql_info()?).build())
    }

    async fn get_flight_info_catalogs(
        &self,
        command: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.key(request.metadata())?;
        let schema = command.into_builder().schema();
        metadata_info(&command, &schema, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        command: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.key(request.metadata())?;
        metadata_rows(command.into_builder().build())
    }

    async fn get_flight_info_schemas(
        &self,
        command: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.key(request.metadata())?;
        let schema = command.clone().into_builder().schema();
        metadata_info(&command, &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        command: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.key(request.metadata())?;
        let mut builder = command.into_builder();
        builder.append(NO_NAME, NO_NAME);
        metadata_rows(builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        command: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.key(request.metadata())?;
        let schema = command.into_builder().schema();
        metadata_info(&command, &schema, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        command: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.key(request.metadata())?;
        let mut builder = command.into_builder();
        builder.append(TABLE_TYPE);
        metadata_rows(builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        command: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.key(request.metadata())?;
        let schema = command.clone().into_builder().schema();
        metadata_info(&command, &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        command: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let key = self.key(request.metadata())?;
        let tables = self.service.tables(key, None).await.map_err(status)?;
        let mut builder = command.into_builder();
        for table in tables {
            builder
                .append(NO_NAME, NO_NAME, &table.name, TABLE_TYPE, &table.schema)
                .map_err(|e| Status::internal(format!("describing {}: {e}", table.name)))?;
        }
        metadata_rows(builder.build())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
